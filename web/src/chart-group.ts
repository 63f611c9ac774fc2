/**
 * The charts of a page: metric keys grouped (loss, reward, KL), one chart per group, made as
 * the first key of its group shows up; shared smoothing, log scale and x axis. With several
 * runs (compare) every chart holds every run. The rows are kept once per run (RunMetrics,
 * columns) and every chart plots from them.
 */
import type { MetricColumns, MetricRow } from './api';
import { MetricChart, type XAxis } from './chart';
import { h } from './dom';
import { RunMetrics } from './run-metrics';

/** Which metric keys share a chart. */
const GROUPS: { title: string; match: (key: string) => boolean }[] = [
  { title: 'Loss', match: (k) => /loss/.test(k) && !/kl/.test(k) },
  { title: 'Reward', match: (k) => /reward|score/.test(k) },
  { title: 'KL', match: (k) => /kl/.test(k) },
];

export function chartGroup(host: HTMLElement, runs: readonly string[] = ['']) {
  const data = new Map<string, RunMetrics>(runs.map((r) => [r, new RunMetrics()]));
  const made = new Map<string, MetricChart>();
  let alpha = 0;
  let log = false;
  let x: XAxis = 'step';
  const mine = (run: string) => {
    let m = data.get(run);
    if (!m) {
      m = new RunMetrics();
      data.set(run, m);
    }
    return m;
  };
  /** Makes the charts the keys seen so far call for, then draws every chart. */
  const refresh = () => {
    const seen = new Set<string>();
    for (const m of data.values()) for (const k of m.numeric) seen.add(k);
    const keys = [...seen].sort();
    for (const g of GROUPS) {
      const these = keys.filter(g.match);
      const known = made.get(g.title);
      // A chart is made once its first key shows up; eval keys that appear later join it.
      if (these.length > 0 && (!known || these.some((k) => !known.keys.includes(k)))) {
        const el =
          host.querySelector<HTMLElement>(`[data-chart="${g.title}"]`) ??
          host.appendChild(h('figure', { class: 'chart', 'data-chart': g.title }));
        known?.destroy();
        el.replaceChildren();
        const chart = new MetricChart(el, g.title, these, data);
        chart.setSmoothing(alpha);
        if (log) chart.setLog(true);
        if (x !== 'step') chart.setX(x);
        made.set(g.title, chart);
      } else known?.draw();
    }
  };
  return {
    /** Rows as the events stream sends them. */
    add(rows: MetricRow[], run = '') {
      mine(run).addRows(rows);
      refresh();
    },
    /** A run's rows as `{job}/metrics?format=columns` serves them. */
    addColumns(columns: MetricColumns, run = '') {
      mine(run).addColumns(columns);
      refresh();
    },
    /** The last step read for `run` (undefined: none yet). */
    lastStep(run = ''): number | undefined {
      return data.get(run)?.steps.at(-1);
    },
    smoothing(a: number) {
      alpha = a;
      for (const c of made.values()) c.setSmoothing(a);
    },
    logScale(on: boolean) {
      log = on;
      for (const c of made.values()) c.setLog(on);
    },
    xAxis(mode: XAxis) {
      x = mode;
      for (const c of made.values()) c.setX(mode);
    },
    destroy() {
      for (const c of made.values()) c.destroy();
    },
  };
}

export type ChartGroup = ReturnType<typeof chartGroup>;

/** The smoothing slider, log-scale box and x-axis choice that drive `charts`. */
export function chartControls(charts: ChartGroup, ...extra: Node[]): HTMLElement {
  const smoothing = h('input', {
    id: 'smoothing',
    type: 'range',
    min: 0,
    max: 0.99,
    step: 0.01,
    value: 0,
  });
  smoothing.addEventListener('input', () => charts.smoothing(Number(smoothing.value)));
  const logScale = h('input', { id: 'log-scale', type: 'checkbox' });
  logScale.addEventListener('change', () => charts.logScale(logScale.checked));
  const xAxis = h(
    'select',
    { id: 'x-axis' },
    h('option', { value: 'step' }, 'step'),
    h('option', { value: 'time' }, 'time'),
    h('option', { value: 'elapsed' }, 'time since start'),
  );
  xAxis.addEventListener('change', () => charts.xAxis(xAxis.value as XAxis));
  return h(
    'div',
    { class: 'filters' },
    h('label', { for: 'smoothing' }, 'Smoothing'),
    smoothing,
    h('label', {}, logScale, ' log scale'),
    h('label', { for: 'x-axis' }, 'X axis'),
    xAxis,
    ...extra,
  );
}

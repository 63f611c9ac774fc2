/**
 * A metric chart: one uPlot plot of several series (e.g. loss:mean and eval loss) of one or
 * more runs (compare), over step, wall-clock time or time since each run's first row, with
 * exponential smoothing and a log scale the user toggles. Points are appended as the events
 * stream brings them; the plot redraws with the new data, keeping the user's zoom.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { MetricRow } from './api';

const COLOURS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c'];

const DASHES = [
  [6, 4],
  [2, 3],
  [10, 3, 2, 3],
];

const STEP_INCREMENTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 100_000];

function tick(v: number | null): string {
  if (v === null) return '';
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

/** Exponential moving average with weight `alpha` on history (0 = raw), skipping gaps. */
export function smooth(values: (number | null)[], alpha: number): (number | null)[] {
  if (alpha <= 0) return values;
  let last: number | null = null;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return null;
    last = last === null ? v : alpha * last + (1 - alpha) * v;
    return last;
  });
}

/** What the x axis shows: the step, the wall-clock time, or seconds since the run's first row. */
export type XAxis = 'step' | 'time' | 'elapsed';

export class MetricChart {
  private plot: uPlot | undefined;
  /** Per run (label; '' for a single job), its rows by step. */
  private readonly runs = new Map<string, Map<number, MetricRow>>();
  private readonly ordered = new Map<string, MetricRow[]>();
  /** Per run, which of the chart's keys it has a number for (a run gets series for those). */
  private readonly present = new Map<string, Set<string>>();
  /** The series the plot was made with (`run\tkey` lines); a change makes it again. */
  private madeWith = '';
  private alpha = 0;
  private log = false;
  private x: XAxis = 'step';

  constructor(
    private readonly host: HTMLElement,
    readonly title: string,
    readonly keys: readonly string[],
    runs: readonly string[] = [''],
  ) {
    for (const r of runs) this.runs.set(r, new Map());
  }

  add(rows: MetricRow[], run = ''): void {
    let mine = this.runs.get(run);
    if (!mine) {
      mine = new Map();
      this.runs.set(run, mine);
    }
    // Rows in step order are kept too: appending past the last step (the live case) keeps it;
    // anything else (a rewritten step) sorts again on the next draw.
    let order = this.ordered.get(run) ?? [];
    let has = this.present.get(run);
    if (!has) {
      has = new Set();
      this.present.set(run, has);
    }
    for (const k of this.keys)
      if (!has.has(k) && rows.some((r) => typeof r.values[k] === 'number')) has.add(k);
    for (const r of rows) {
      const last = order.at(-1);
      if (!mine.has(r.step) && (!last || r.step > last.step)) order.push(r);
      else order = [];
      mine.set(r.step, r);
    }
    this.ordered.set(run, order.length === mine.size ? order : []);
    this.draw();
  }

  setSmoothing(alpha: number): void {
    this.alpha = alpha;
    this.draw();
  }

  setLog(log: boolean): void {
    this.log = log;
    this.rebuild();
  }

  setX(x: XAxis): void {
    this.x = x;
    this.rebuild();
  }

  /** The rows plotted so far, one per step, of `run`. */
  allRows(run = ''): MetricRow[] {
    return [...(this.runs.get(run)?.values() ?? [])];
  }

  /** Number of rows plotted, all runs (tests read it from the DOM via data-points). */
  get points(): number {
    let n = 0;
    for (const rows of this.runs.values()) n += rows.size;
    return n;
  }

  private sortedRows(run: string): MetricRow[] {
    const rows = this.runs.get(run)!;
    let order = this.ordered.get(run);
    if (!order || order.length !== rows.size) {
      order = [...rows.values()].sort((a, b) => a.step - b.step);
      this.ordered.set(run, order);
    }
    return order;
  }

  private xs(rows: MetricRow[]): number[] {
    if (this.x === 'step') return rows.map((r) => r.step);
    const t = rows.map((r) => Date.parse(r.time) / 1000);
    if (this.x === 'time') return t;
    let start = Number.POSITIVE_INFINITY;
    for (const v of t) if (v < start) start = v;
    return t.map((v) => v - start);
  }

  private data(): uPlot.AlignedData {
    // Each run's rows in step order with their x; the x values of all runs merged.
    const perRun = [...this.runs.keys()].map((run) => {
      const rows = this.sortedRows(run);
      return { rows, xs: this.xs(rows) };
    });
    const single = perRun.length === 1 && this.x === 'step' ? perRun[0]! : undefined;
    const xs = single
      ? single.xs
      : [...new Set(perRun.flatMap((run) => run.xs))].sort((a, b) => a - b);
    const at = single ? undefined : new Map(xs.map((x, i) => [x, i]));
    const series: (number | null)[][] = [];
    for (const { run, key } of this.series()) {
      const { rows, xs: runXs } = perRun[[...this.runs.keys()].indexOf(run)]!;
      const ys: (number | null)[] = new Array(xs.length).fill(null);
      rows.forEach((r, i) => {
        const v = r.values[key];
        if (typeof v === 'number' && (!this.log || v > 0)) ys[at ? at.get(runXs[i]!)! : i] = v;
      });
      series.push(smooth(ys, this.alpha));
    }
    return [xs, ...series] as uPlot.AlignedData;
  }

  /** The plotted series: each run's keys that it has values for, in key order. */
  private series(): { run: string; key: string; index: number }[] {
    return [...this.runs.keys()].flatMap((run) =>
      this.keys
        .filter((k) => this.present.get(run)?.has(k))
        .map((key, index) => ({ run, key, index })),
    );
  }

  private rebuild(): void {
    this.plot?.destroy();
    this.plot = undefined;
    this.draw();
  }

  private draw(): void {
    this.host.dataset.points = String(this.points);
    const data = this.data();
    const series = this.series();
    const signature = series.map((x) => `${x.run}\t${x.key}`).join('\n');
    if (this.plot && signature === this.madeWith) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.madeWith = signature;
    // clientWidth includes the figure's padding (0.5rem a side).
    const width = Math.max(320, (this.host.clientWidth || 656) - 16);
    const xLabel = { step: 'step', time: 'time', elapsed: 'seconds since start' }[this.x];
    const runs = [...this.runs.keys()];
    this.plot = new uPlot(
      {
        title: this.title,
        width,
        height: 260,
        scales: { x: { time: this.x === 'time' }, y: this.log ? { distr: 3 } : {} },
        axes: [
          // Steps are whole numbers: no 2.5 ticks.
          this.x === 'step' ? { label: xLabel, incrs: STEP_INCREMENTS } : { label: xLabel },
          // Small values (KL terms) keep their digits instead of rounding to 0.
          { values: (_u, splits) => splits.map(tick), size: 60 },
        ],
        series: [
          { label: xLabel },
          ...series.map(({ run, key, index }) => ({
            label: run ? `${run} ${key}` : key,
            // Compared runs keep one colour each, their keys told apart by the dash.
            stroke: COLOURS[(runs.length > 1 ? runs.indexOf(run) : index) % COLOURS.length]!,
            ...(runs.length > 1 && index > 0 ? { dash: DASHES[(index - 1) % DASHES.length]! } : {}),
            width: 2,
            spanGaps: true,
          })),
        ],
      },
      data,
      this.host,
    );
  }

  destroy(): void {
    this.plot?.destroy();
  }
}

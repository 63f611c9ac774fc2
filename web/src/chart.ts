/**
 * A metric chart: one uPlot plot of several series (e.g. loss:mean and eval loss) of one or
 * more runs (compare), over step, wall-clock time or time since each run's first row, with
 * exponential smoothing and a log scale the user toggles. The rows live in the chart group's
 * RunMetrics (columns); after rows are added the plot redraws, keeping the user's zoom.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { RunMetrics } from './run-metrics';

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
  /** The series the plot was made with (`run\tkey` lines); a change makes it again. */
  private madeWith = '';
  private alpha = 0;
  private log = false;
  private x: XAxis = 'step';

  constructor(
    private readonly host: HTMLElement,
    readonly title: string,
    readonly keys: readonly string[],
    /** Every run's rows, by run label ('' for a single job); the chart group fills them. */
    private readonly runs: ReadonlyMap<string, RunMetrics>,
  ) {}

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

  /** Number of rows plotted, all runs (tests read it from the DOM via data-points). */
  get points(): number {
    let n = 0;
    for (const m of this.runs.values()) n += m.size;
    return n;
  }

  private xs(m: RunMetrics): number[] {
    if (this.x === 'step') return m.steps;
    const t = m.timesMs.map((v) => v / 1000);
    if (this.x === 'time') return t;
    let start = Number.POSITIVE_INFINITY;
    for (const v of t) if (v < start) start = v;
    return t.map((v) => v - start);
  }

  private data(): uPlot.AlignedData {
    const runs = [...this.runs.keys()];
    const perRun = runs.map((run) => this.xs(this.runs.get(run)!));
    // One run over steps (the job page): the run's own arrays, nothing copied unless smoothed
    // or on a log scale. Otherwise the x values of all runs merged, each run's values placed.
    const single = runs.length === 1 && this.x === 'step';
    const xs = single ? perRun[0]! : [...new Set(perRun.flat())].sort((a, b) => a - b);
    const at = single ? undefined : new Map(xs.map((x, i) => [x, i]));
    const series: (number | null)[][] = [];
    for (const { run, key } of this.series()) {
      const i = runs.indexOf(run);
      const col = this.runs.get(run)!.values.get(key)!;
      let ys = col;
      if (at || this.log) {
        const runXs = perRun[i]!;
        ys = new Array(xs.length).fill(null);
        for (let j = 0; j < col.length; j++) {
          const v = col[j]!;
          if (v !== null && (!this.log || v > 0)) ys[at ? at.get(runXs[j]!)! : j] = v;
        }
      }
      series.push(smooth(ys, this.alpha));
    }
    return [xs, ...series] as uPlot.AlignedData;
  }

  /** The plotted series: each run's keys that it has numbers for, in key order. */
  private series(): { run: string; key: string; index: number }[] {
    return [...this.runs].flatMap(([run, m]) =>
      this.keys.filter((k) => m.numeric.has(k)).map((key, index) => ({ run, key, index })),
    );
  }

  private rebuild(): void {
    this.plot?.destroy();
    this.plot = undefined;
    this.draw();
  }

  /** Plots what the runs hold now (the chart group calls it after adding rows). */
  draw(): void {
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

/**
 * A metric chart: one uPlot plot of several series (e.g. loss:mean and eval loss) over step,
 * with exponential smoothing and a log scale the user toggles. Points are appended as the
 * events stream brings them; the plot redraws with the new data, keeping the user's zoom.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { MetricRow } from './api';

const COLOURS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c'];

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

export class MetricChart {
  private plot: uPlot | undefined;
  private readonly rows = new Map<number, MetricRow>();
  private alpha = 0;
  private log = false;

  constructor(
    private readonly host: HTMLElement,
    readonly title: string,
    readonly keys: readonly string[],
  ) {}

  add(rows: MetricRow[]): void {
    for (const r of rows) this.rows.set(r.step, r);
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

  /** The rows plotted so far, one per step. */
  allRows(): MetricRow[] {
    return [...this.rows.values()];
  }

  /** Number of steps plotted (tests read it from the DOM via data-points). */
  get points(): number {
    return this.rows.size;
  }

  private data(): uPlot.AlignedData {
    const steps = [...this.rows.keys()].sort((a, b) => a - b);
    const series = this.keys.map((k) =>
      smooth(
        steps.map((s) => {
          const v = this.rows.get(s)?.values[k];
          return typeof v === 'number' && (!this.log || v > 0) ? v : null;
        }),
        this.alpha,
      ),
    );
    return [steps, ...series] as uPlot.AlignedData;
  }

  private rebuild(): void {
    this.plot?.destroy();
    this.plot = undefined;
    this.draw();
  }

  private draw(): void {
    this.host.dataset.points = String(this.rows.size);
    const data = this.data();
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    // clientWidth includes the figure's padding (0.5rem a side).
    const width = Math.max(320, (this.host.clientWidth || 656) - 16);
    this.plot = new uPlot(
      {
        title: this.title,
        width,
        height: 260,
        scales: { x: { time: false }, y: this.log ? { distr: 3 } : {} },
        axes: [
          // Steps are whole numbers: no 2.5 ticks.
          { label: 'step', incrs: STEP_INCREMENTS },
          // Small values (KL terms) keep their digits instead of rounding to 0.
          { values: (_u, splits) => splits.map(tick), size: 60 },
        ],
        series: [
          { label: 'step' },
          ...this.keys.map((k, i) => ({
            label: k,
            stroke: COLOURS[i % COLOURS.length]!,
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

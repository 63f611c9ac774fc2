/**
 * One run's metric rows as columns, in step order: what the charts plot. It is filled first
 * from `{job}/metrics?format=columns` (whose arrays it keeps as they are: no object per row,
 * and the plot gets the same arrays) and then from the rows the events stream brings: a row
 * past the last step is appended, a step sent again (the workflow merged eval values into it)
 * replaces that step's row, any other step is inserted in order.
 */
// Straight from the server's modules (not ./api) so that node-side tests can import this too.
import type { MetricColumns } from '../../src/control-plane/resources/metric-columns.js';
import type { MetricRow } from '../../src/store/index.js';

/** Only numbers are plotted; anything else (a string note, a missing key) is a gap. */
const num = (v: unknown): number | null => (typeof v === 'number' ? v : null);

export class RunMetrics {
  steps: number[] = [];
  /** Each row's time, ms since the epoch. */
  timesMs: number[] = [];
  /** Per metric key, one value per row (null: no number there). */
  readonly values = new Map<string, (number | null)[]>();
  /** The keys with at least one number: a chart draws a series for each. */
  readonly numeric = new Set<string>();

  get size(): number {
    return this.steps.length;
  }

  addColumns(c: Pick<MetricColumns, 'steps' | 'timesMs' | 'values'>): void {
    const n = c.steps.length;
    const ascending = c.steps.every((s, i) => i === 0 || s > c.steps[i - 1]!);
    if (this.size === 0 && ascending) {
      // The first read (100,000 rows on a long job): keep the parsed arrays.
      this.steps = c.steps;
      this.timesMs = c.timesMs;
      for (const [key, col] of Object.entries(c.values)) {
        let any = false;
        for (let i = 0; i < n; i++) {
          const v = col[i];
          if (typeof v === 'number') any = true;
          else if (v !== null) col[i] = null;
        }
        this.values.set(key, col as (number | null)[]);
        if (any) this.numeric.add(key);
      }
      return;
    }
    const entries = Object.entries(c.values);
    for (let i = 0; i < n; i++)
      this.put(c.steps[i]!, c.timesMs[i]!, (set) => {
        for (const [key, col] of entries) set(key, col[i]);
      });
  }

  addRows(rows: readonly MetricRow[]): void {
    for (const r of rows)
      this.put(r.step, Date.parse(r.time), (set) => {
        for (const key in r.values) set(key, r.values[key]);
      });
  }

  /** Upserts one row: `fill` calls `set` for each of the row's keys. */
  private put(step: number, timeMs: number, fill: (set: (k: string, v: unknown) => void) => void) {
    const n = this.size;
    let at: number;
    let fresh = true;
    if (n === 0 || step > this.steps[n - 1]!) at = n;
    else {
      // Binary search: the first index whose step is >= `step`.
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.steps[mid]! < step) lo = mid + 1;
        else hi = mid;
      }
      at = lo;
      fresh = this.steps[at] !== step;
    }
    if (fresh) {
      this.steps.splice(at, 0, step);
      this.timesMs.splice(at, 0, timeMs);
      for (const col of this.values.values()) col.splice(at, 0, null);
    } else {
      // The whole row again: keys it no longer has become gaps.
      this.timesMs[at] = timeMs;
      for (const col of this.values.values()) col[at] = null;
    }
    fill((key, v) => {
      let col = this.values.get(key);
      if (!col) {
        col = new Array<number | null>(this.size).fill(null);
        this.values.set(key, col);
      }
      const x = num(v);
      col[at] = x;
      if (x !== null) this.numeric.add(key);
    });
  }
}

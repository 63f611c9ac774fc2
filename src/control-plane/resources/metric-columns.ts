/**
 * `GET {job}/metrics?format=columns`: a job's metric rows as one array per field instead of
 * one object per row. The default JSON shape (`{job, metrics: [{step, values, time}]}`) stays
 * what clients read; this one is for charts (the dashboard): about half the bytes for 100,000
 * rows, and the browser parses a few long arrays of numbers instead of allocating an object
 * (and a `values` object) per row, then hands the arrays to the plot as they are
 * (bench:dashboard).
 *
 * Row i is `steps[i]`, `timesMs[i]` and, per metric key, `values[key][i]` (null where that row
 * has no value for the key); keys are sorted. Times are milliseconds since the Unix epoch (the
 * stored ISO times have millisecond precision, so nothing is lost).
 */
import type { MetricRow } from '../../store/index.js';

export interface MetricColumns {
  job: string;
  steps: number[];
  timesMs: number[];
  values: Record<string, (number | string | null)[]>;
}

export function metricColumns(job: string, rows: readonly MetricRow[]): MetricColumns {
  const keys = new Set<string>();
  for (const r of rows) for (const k in r.values) keys.add(k);
  const values: MetricColumns['values'] = {};
  for (const k of [...keys].sort()) values[k] = new Array(rows.length).fill(null);
  const steps = new Array<number>(rows.length);
  const timesMs = new Array<number>(rows.length);
  rows.forEach((r, i) => {
    steps[i] = r.step;
    timesMs[i] = Date.parse(r.time);
    for (const k in r.values) values[k]![i] = r.values[k] ?? null;
  });
  return { job, steps, timesMs, values };
}

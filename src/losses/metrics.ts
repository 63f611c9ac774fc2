/**
 * Metric keys are `name:reduction` (`loss:sum`, `ppo_kl:mean`): the suffix says how values
 * from micro-batches or data-parallel replicas combine into one number for the step.
 */
import { LossError } from './errors.js';

export type Metrics = Record<string, number>;

export const METRIC_REDUCTIONS = ['sum', 'mean', 'min', 'max'] as const;
export type MetricReduction = (typeof METRIC_REDUCTIONS)[number];

export function metricKey(name: string, reduction: MetricReduction): string {
  return `${name}:${reduction}`;
}

export function parseMetricKey(key: string): { name: string; reduction: MetricReduction } {
  const i = key.lastIndexOf(':');
  const reduction = key.slice(i + 1);
  if (i <= 0 || !(METRIC_REDUCTIONS as readonly string[]).includes(reduction)) {
    throw new LossError(
      'invalid_loss_output',
      `metric key '${key}' must be 'name:reduction' with reduction one of ${METRIC_REDUCTIONS.join(', ')}`,
    );
  }
  return { name: key.slice(0, i), reduction: reduction as MetricReduction };
}

/**
 * Checks metrics returned by a (custom) loss: finite numbers, keys `name:reduction`. A key
 * without a suffix — what the seed's Python examples return, `{"margin": ...}` — is taken as
 * a mean, the only reduction that is right for a single number of unknown kind.
 */
export function normalizeMetrics(metrics: Readonly<Record<string, unknown>>): Metrics {
  const out: Metrics = {};
  for (const [key, value] of Object.entries(metrics)) {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new LossError(
        'invalid_loss_output',
        `metric '${key}' is ${String(value)}; metrics must be finite numbers`,
      );
    }
    const full = key.includes(':') ? key : metricKey(key, 'mean');
    parseMetricKey(full);
    out[full] = value;
  }
  return out;
}

/**
 * Combines the metrics of several micro-batches by each key's reduction. `mean` is the
 * unweighted mean over the parts that report the key.
 */
export function mergeMetrics(parts: readonly Metrics[]): Metrics {
  const acc = new Map<string, { reduction: MetricReduction; value: number; count: number }>();
  for (const part of parts) {
    for (const [key, value] of Object.entries(part)) {
      const { reduction } = parseMetricKey(key);
      const cur = acc.get(key);
      if (!cur) {
        acc.set(key, { reduction, value, count: 1 });
        continue;
      }
      cur.count++;
      if (reduction === 'sum' || reduction === 'mean') cur.value += value;
      else if (reduction === 'min') cur.value = Math.min(cur.value, value);
      else cur.value = Math.max(cur.value, value);
    }
  }
  const out: Metrics = {};
  for (const [key, { reduction, value, count }] of acc) {
    out[key] = reduction === 'mean' ? value / count : value;
  }
  return out;
}

/** a / b, or 0 when nothing was counted (a metric over zero tokens). */
export function ratioOrZero(a: number, b: number): number {
  return b > 0 ? a / b : 0;
}

/**
 * The control plane's /metrics: request counts and latency by route pattern and status (every
 * route, answered by the onResponse hook in server.ts), the process's own metrics, and jobs by
 * kind and state over every account, counted in the store when scraped (so every control plane
 * of a platform reports the same totals, whichever worker wrote the states).
 */
import { Gauge, ServerMetrics } from '../../metrics/index.js';
import type { Collection, Store } from '../../store/index.js';

const JOB_COLLECTIONS: readonly Collection[] = [
  'supervisedFineTuningJobs',
  'dpoJobs',
  'orpoJobs',
  'reinforcementFineTuningJobs',
  'rlorTrainerJobs',
];

export function controlPlaneMetrics(store: Store): ServerMetrics {
  const metrics = new ServerMetrics({ processMetrics: true });
  new Gauge({
    name: 'temper_jobs',
    help: 'Jobs by kind (the REST collection) and state, over every account.',
    labelNames: ['kind', 'state'],
    registers: [metrics.registry],
    async collect() {
      const counts = await Promise.all(JOB_COLLECTIONS.map((c) => store.countBy(c, 'state')));
      this.reset();
      JOB_COLLECTIONS.forEach((kind, i) => {
        for (const { value, count } of counts[i] ?? [])
          this.set({ kind, state: value || 'JOB_STATE_UNSPECIFIED' }, count);
      });
    },
  });
  return metrics;
}

/**
 * A replica's /metrics (Prometheus text, prom-client), behind the replica's token like its
 * other routes: its HTTP requests by route and status, and what its runtime counts (tokens
 * generated, requests in flight, prefix-cache lookups and hits, hot-loads by kind and outcome,
 * LoRA addons, readiness), read from the runtime's status when scraped, plus the process's
 * own metrics. Every series carries the replica's id. Its gateway serves it to the
 * deployment's callers as `/metrics/replicas/{replica}`.
 */
import { Counter, Gauge, ServerMetrics } from '../../metrics/index.js';
import type { ReplicaRuntime } from './runtime.js';

/** The replica's routes, for the `route` label; anything else is `unmatched`. */
export const REPLICA_ROUTES = new Set([
  '/status',
  '/load',
  '/hint',
  '/addons',
  '/addons/unload',
  '/generate',
  '/metrics',
]);

export function replicaMetrics(rt: ReplicaRuntime): ServerMetrics {
  const metrics = new ServerMetrics({
    defaultLabels: { replica: rt.status().replica_id },
    processMetrics: true,
  });
  const registers = [metrics.registry];
  // Read from the runtime's status when scraped (cheap): nothing to keep in step.
  const status = () => rt.status();
  new Gauge({
    name: 'temper_replica_ready',
    help: '1 once the replica serves (a failed hot-load keeps serving the previous snapshot).',
    registers,
    collect() {
      this.set(status().readiness ? 1 : 0);
    },
  });
  new Gauge({
    name: 'temper_replica_inflight_requests',
    help: 'Generations being served now.',
    registers,
    collect() {
      this.set(status().inflight);
    },
  });
  new Gauge({
    name: 'temper_replica_addons',
    help: 'LoRA addons served beside the current snapshot (multi-LoRA).',
    registers,
    collect() {
      this.set(status().addons?.length ?? 0);
    },
  });
  const total = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  total(
    'temper_replica_generated_tokens_total',
    'Tokens generated since the replica started.',
    () => status().generated_tokens,
  );
  total(
    'temper_replica_prefix_cache_lookups_total',
    'Prompts looked up in the prefix cache.',
    () => status().prefix_cache.lookups,
  );
  total(
    'temper_replica_prefix_cache_hits_total',
    'Prefix-cache lookups that reused a cached prefix.',
    () => status().prefix_cache.hits,
  );
  new Counter({
    name: 'temper_replica_hot_loads_total',
    help: 'Hot-loads finished, by snapshot kind (full, delta) and outcome (ready, failed).',
    labelNames: ['kind', 'outcome'],
    registers,
    collect() {
      this.reset();
      for (const load of status().loads) {
        if (load.readyAt) this.inc({ kind: load.kind, outcome: 'ready' });
        else if (load.error) this.inc({ kind: load.kind, outcome: 'failed' });
      }
    },
  });
  return metrics;
}

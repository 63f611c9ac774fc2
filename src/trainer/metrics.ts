/**
 * A trainer pod's /metrics (Prometheus text, prom-client): every TrainerService call by RPC
 * and outcome (the stable error code, or `ok`) with its duration, the pod's models and
 * sessions, how long it has been idle, whether it is draining, and the process's own metrics
 * (memory, CPU, event-loop lag). gRPC has no /metrics, so the pod serves it over HTTP on a
 * port of its own, behind the pod's token like every other call to it: a scraper presents
 * `Authorization: Bearer <token>` (the job's account reads the token with the address).
 */
import {
  Counter,
  Gauge,
  Histogram,
  type MetricsServer,
  ServerMetrics,
  serveMetrics,
} from '../metrics/index.js';
import { trainerBearerCheck } from './auth.js';
import type { TrainerPod } from './pod.js';

/** RPC latency buckets, seconds: from a heartbeat to a long checkpoint save. */
const RPC_BUCKETS = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export class TrainerMetrics {
  readonly server = new ServerMetrics({ processMetrics: true });
  private readonly rpcs: Counter<'rpc' | 'code'>;
  private readonly rpcSeconds: Histogram<'rpc' | 'code'>;

  constructor(pod: TrainerPod) {
    const registers = [this.server.registry];
    this.rpcs = new Counter({
      name: 'temper_trainer_rpcs_total',
      help: 'TrainerService calls answered, by RPC and outcome (ok, or the error code).',
      labelNames: ['rpc', 'code'],
      registers,
    });
    this.rpcSeconds = new Histogram({
      name: 'temper_trainer_rpc_duration_seconds',
      help: 'Time a TrainerService call took, queueing behind earlier operations included.',
      labelNames: ['rpc', 'code'],
      buckets: RPC_BUCKETS,
      registers,
    });
    // Read from the pod when scraped: nothing to keep in step.
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    gauge('temper_trainer_models', 'Models the pod holds.', () => pod.health().modelCount ?? 0);
    gauge(
      'temper_trainer_sessions',
      'Client sessions open on the pod.',
      () => pod.health().sessionCount ?? 0,
    );
    gauge(
      'temper_trainer_idle_seconds',
      'Time since the last operation or heartbeat (the pod stops at its inactivity timeout).',
      () => pod.idleMs() / 1000,
    );
    gauge('temper_trainer_draining', '1 while the pod is stopping, else 0.', () =>
      pod.isDraining ? 1 : 0,
    );
  }

  /** Records one answered call. */
  observeRpc(rpc: string, code: string, seconds: number): void {
    this.rpcs.inc({ rpc, code });
    this.rpcSeconds.observe({ rpc, code }, seconds);
  }
}

/** Serves `GET /metrics` on host:port (0 = any free port) to callers presenting `token`. */
export function serveTrainerMetrics(
  metrics: TrainerMetrics,
  token: string,
  host: string,
  port: number,
): Promise<MetricsServer> {
  const presents = trainerBearerCheck(token);
  return serveMetrics(metrics.server, {
    host,
    port,
    authorize: (authorization) =>
      presents(authorization) ? null : "present this pod's token: Authorization: Bearer <token>",
  });
}

/**
 * A worker host's Prometheus metrics: the activities it ran (preparing jobs, launching pods,
 * training segments, rollouts, promotions...) by activity type and outcome, how long they
 * took, and how many run now; with the process's own metrics. Counted by a Temporal activity
 * interceptor, so every activity of both of the host's workers is counted once, whatever
 * its code does. Activity types are a fixed set of names: no job or account id becomes a
 * series.
 */
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { Counter, Gauge, Histogram, ServerMetrics } from '../metrics/index.js';

/** Activity duration buckets, seconds: from a status update to a long training segment. */
const ACTIVITY_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600];

export type ActivityOutcome = 'completed' | 'failed' | 'cancelled';

export class WorkerMetrics {
  readonly server = new ServerMetrics({ processMetrics: true });
  private readonly finished: Counter<'activity' | 'outcome'>;
  private readonly seconds: Histogram<'activity' | 'outcome'>;
  private readonly running: Gauge<'activity'>;

  constructor() {
    const registers = [this.server.registry];
    this.finished = new Counter({
      name: 'temper_worker_activities_total',
      help: 'Activities this host ran to their end, by activity type and outcome.',
      labelNames: ['activity', 'outcome'],
      registers,
    });
    this.seconds = new Histogram({
      name: 'temper_worker_activity_duration_seconds',
      help: 'Time an activity ran on this host, from its start to its end.',
      labelNames: ['activity', 'outcome'],
      buckets: ACTIVITY_BUCKETS,
      registers,
    });
    this.running = new Gauge({
      name: 'temper_worker_activities_running',
      help: 'Activities running on this host now, by activity type.',
      labelNames: ['activity'],
      registers,
    });
  }

  /** The interceptor that counts each activity a Temporal worker runs. */
  interceptor(): ActivityInterceptorsFactory {
    return (ctx) => ({
      inbound: {
        execute: async (input, next) => {
          const activity = ctx.info.activityType;
          const start = process.hrtime.bigint();
          this.running.inc({ activity });
          let outcome: ActivityOutcome = 'failed';
          try {
            const result = await next(input);
            outcome = 'completed';
            return result;
          } catch (error) {
            // Ended by a cancel (the job's, or the worker shutting down), not by its own fault.
            if (ctx.cancellationSignal.aborted) outcome = 'cancelled';
            throw error;
          } finally {
            this.running.dec({ activity });
            const labels = { activity, outcome };
            this.finished.inc(labels);
            this.seconds.observe(labels, Number(process.hrtime.bigint() - start) / 1e9);
          }
        },
      },
    });
  }
}

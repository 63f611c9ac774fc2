/**
 * `--wait`: follow a job until it ends, with a progress bar of step/total and the latest loss
 * (SFT, DPO) or mean reward (RFT). Step and total come from the job's `jobProgress`; the loss
 * or reward from `GET {job}/metrics`, read incrementally (`afterStep`). Progress goes to
 * stderr so that stdout keeps only the result.
 */

import { FINAL_STATES } from '../control-plane/resources/jobs/states.js';
import type { TemperApi } from './api/client.js';
import type { Kind } from './api/kinds.js';
import { type Job, jobSchema, metricsSchema } from './api/schemas.js';
import { createProgress, type Progress } from './progress.js';

export interface WaitOptions {
  pollMs?: number;
  out?: NodeJS.WriteStream;
}

const short = (state: string) => state.replace(/^JOB_STATE_/, '');

/** The metric shown beside the bar. */
function metricOf(kind: Kind): { key: string; label: string } {
  return kind.key === 'rftj'
    ? { key: 'reward:mean', label: 'reward' }
    : { key: 'loss:mean', label: 'loss' };
}

class MetricFollower {
  private afterStep = 0;
  value: number | undefined;
  constructor(
    private readonly api: TemperApi,
    private readonly name: string,
    private readonly key: string,
  ) {}

  /** Reads the rows recorded since the last call (once the job reports a new step). */
  async advance(step: number): Promise<void> {
    if (step <= this.afterStep) return;
    const { metrics } = await this.api.request('GET', `/v1/${this.name}/metrics`, metricsSchema, {
      query: { afterStep: this.afterStep },
    });
    for (const row of metrics) {
      const v = row.values[this.key];
      if (typeof v === 'number') this.value = v;
      this.afterStep = Math.max(this.afterStep, row.step);
    }
  }
}

export async function waitForJob(
  api: TemperApi,
  kind: Kind,
  name: string,
  opts: WaitOptions = {},
): Promise<Job> {
  const out = opts.out ?? process.stderr;
  const metric = metricOf(kind);
  const follower = new MetricFollower(api, name, metric.key);
  let bar: Progress | undefined;
  let lastState = '';
  for (;;) {
    const job = await api.request('GET', `/v1/${name}`, jobSchema);
    const step = job.jobProgress?.step ?? 0;
    const total = job.jobProgress?.totalSteps ?? 0;
    if (job.state !== lastState && !bar) out.write(`${name}: ${short(job.state)}\n`);
    lastState = job.state;
    await follower.advance(step).catch(() => undefined);
    const value = follower.value ?? job.jobProgress?.loss ?? undefined;
    if (!bar && total > 0) bar = createProgress(kind.label, total, out);
    bar?.update(step, {
      [metric.label]: value === undefined || value === null ? '-' : value.toFixed(4),
    });
    if (FINAL_STATES.includes(job.state)) {
      bar?.stop();
      if (bar) out.write(`${name}: ${short(job.state)}\n`);
      return job;
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
  }
}

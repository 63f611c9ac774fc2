/**
 * Trainer pods through the control plane: the Launcher the ServiceClient uses when it is
 * given `baseUrl` and `apiKey`. A pod is an rlorTrainerJob resource — created with
 * `POST /v1/accounts/{a}/rlorTrainerJobs`, placed on a worker host by the platform, reachable
 * at the `trainerAddress` the job publishes once it is JOB_STATE_RUNNING — and is stopped by
 * deleting the job. Reattaching (`trainerJobId`) and reconnectAndWait work the same way.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { TrainerError } from '../trainer/errors.js';
import type {
  Launcher,
  TrainerEndpoint,
  TrainerJobInfo,
  TrainerJobState,
  TrainerLaunchSpec,
} from '../trainer/launcher/index.js';

export interface ControlPlaneLauncherOptions {
  /** http://host:port of the control plane. */
  baseUrl: string;
  apiKey: string;
  account: string;
  /** How long a new trainer may take to reach RUNNING (default 5 min). */
  startTimeoutMs?: number;
  pollMs?: number;
  fetch?: typeof fetch;
}

const jobSchema = z
  .object({
    name: z.string(),
    state: z.string(),
    baseModel: z.string(),
    loraRank: z.number().optional(),
    forwardOnly: z.boolean().optional(),
    trainerAddress: z.string().nullable().optional(),
    trainerToken: z.string().nullable().optional(),
    status: z.object({ message: z.string().optional() }).passthrough().optional(),
    createTime: z.string().optional(),
    displayName: z.string().optional(),
  })
  .passthrough();
type TrainerJob = z.output<typeof jobSchema>;

const STATES: Record<string, TrainerJobState> = {
  JOB_STATE_CREATING: 'starting',
  JOB_STATE_PENDING: 'starting',
  JOB_STATE_RUNNING: 'running',
  JOB_STATE_IDLE: 'running',
  JOB_STATE_COMPLETED: 'stopped',
  JOB_STATE_CANCELLED: 'stopped',
  JOB_STATE_FAILED: 'failed',
};

export class ControlPlaneLauncher implements Launcher {
  readonly kind = 'control-plane';
  private readonly fetch: typeof fetch;

  constructor(private readonly options: ControlPlaneLauncherOptions) {
    this.fetch = options.fetch ?? fetch;
  }

  private url(path = '', query = ''): string {
    const base = `${this.options.baseUrl.replace(/\/+$/, '')}/v1/accounts/${this.options.account}/rlorTrainerJobs`;
    return `${base}${path}${query}`;
  }

  private async call(method: string, url: string, body?: unknown): Promise<unknown> {
    let res: Response;
    try {
      res = await this.fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.options.apiKey}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (error) {
      throw new TrainerError(
        'unavailable',
        `control plane ${this.options.baseUrl}: ${(error as Error).message}`,
      );
    }
    const payload = (await res.json().catch(() => ({}))) as {
      error?: { message?: string };
    };
    if (res.status === 404)
      throw new TrainerError('unknown_trainer', payload.error?.message ?? `${url}: not found`);
    if (!res.ok)
      throw new TrainerError(
        res.status === 400 ? 'invalid_argument' : 'unavailable',
        `control plane: ${payload.error?.message ?? `HTTP ${res.status}`}`,
      );
    return payload;
  }

  private async job(jobId: string): Promise<TrainerJob> {
    return jobSchema.parse(await this.call('GET', this.url(`/${jobId}`)));
  }

  async launch(spec: TrainerLaunchSpec): Promise<TrainerEndpoint> {
    const jobId = spec.jobId ?? `trainer-${randomBytes(4).toString('hex')}`;
    const timeoutMs = spec.inactivityTimeoutMs ?? 0;
    await this.call('POST', this.url('', `?rlorTrainerJobId=${jobId}`), {
      baseModel: spec.baseModel,
      loraRank: spec.loraRank ?? 0,
      forwardOnly: spec.forwardOnly ?? false,
      ...(spec.displayName ? { displayName: spec.displayName } : {}),
      ...(timeoutMs > 0
        ? { inactivityTimeout: `${Math.ceil(timeoutMs / 1000)}s` }
        : { disableInactivityCleanup: spec.inactivityTimeoutMs === 0 }),
    });
    return this.waitRunning(jobId);
  }

  /** Polls the job until it serves; a job that fails or ends first is an error. */
  private async waitRunning(jobId: string): Promise<TrainerEndpoint> {
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 300_000);
    for (;;) {
      const job = await this.job(jobId);
      if (job.state === 'JOB_STATE_RUNNING' && job.trainerAddress)
        return { jobId, address: job.trainerAddress, token: job.trainerToken ?? '' };
      if (STATES[job.state] === 'failed' || STATES[job.state] === 'stopped')
        throw new TrainerError(
          'launch_failed',
          `trainer job ${job.name} is ${job.state}: ${job.status?.message ?? ''}`.trim(),
        );
      if (Date.now() > deadline)
        throw new TrainerError(
          'launch_failed',
          `trainer job ${job.name} did not start in time (${job.state})`,
        );
      await new Promise((r) => setTimeout(r, this.options.pollMs ?? 200));
    }
  }

  async attach(jobId: string): Promise<TrainerEndpoint> {
    const job = await this.job(jobId);
    if (job.state !== 'JOB_STATE_RUNNING' || !job.trainerAddress)
      throw new TrainerError(
        'unknown_trainer',
        `trainer job ${job.name} is ${job.state}, not serving`,
      );
    return { jobId, address: job.trainerAddress, token: job.trainerToken ?? '' };
  }

  async stop(jobId: string): Promise<void> {
    try {
      await this.call('DELETE', this.url(`/${jobId}`));
    } catch (error) {
      if (!(error instanceof TrainerError && error.code === 'unknown_trainer')) throw error;
    }
  }

  async get(jobId: string): Promise<TrainerJobInfo | undefined> {
    try {
      return this.info(jobId, await this.job(jobId));
    } catch (error) {
      if (error instanceof TrainerError && error.code === 'unknown_trainer') return undefined;
      throw error;
    }
  }

  async list(): Promise<TrainerJobInfo[]> {
    const out: TrainerJobInfo[] = [];
    let token = '';
    do {
      const page = z
        .object({
          rlorTrainerJobs: z.array(jobSchema).default([]),
          nextPageToken: z.string().optional(),
        })
        .parse(
          await this.call(
            'GET',
            this.url('', `?pageSize=200${token ? `&pageToken=${token}` : ''}`),
          ),
        );
      for (const job of page.rlorTrainerJobs) out.push(this.info(job.name.split('/').pop()!, job));
      token = page.nextPageToken ?? '';
    } while (token);
    return out;
  }

  private info(jobId: string, job: TrainerJob): TrainerJobInfo {
    const state = STATES[job.state] ?? 'starting';
    return {
      jobId,
      address: job.trainerAddress ?? '',
      token: job.trainerToken ?? '',
      state,
      spec: {
        baseModel: job.baseModel,
        loraRank: job.loraRank ?? 0,
        forwardOnly: job.forwardOnly ?? false,
      },
      createdAt: job.createTime ?? '',
      ...(state === 'stopped' || state === 'failed'
        ? { reason: job.status?.message ?? job.state }
        : {}),
    };
  }
}

/**
 * Each RFT job's evaluator on this host: one sandboxed process per job, warm across its
 * segments; closed (process killed, work directory removed) when the job's pod stops here or
 * after IDLE_MS without a segment.
 */
import { type Evaluate, type Evaluator, openEvaluator } from '../../evaluators/index.js';
import type { RftSettings, TrainingPlan } from '../types.js';
import { evaluatorName, type HostDeps } from './host-support.js';

/** How long a job's evaluator process waits for its next segment before it is closed. */
const IDLE_MS = 5 * 60_000;

export class JobEvaluators {
  private readonly open = new Map<
    string,
    { evaluator: Promise<Evaluator>; idle?: NodeJS.Timeout }
  >();
  private readonly jobOfPod = new Map<string, string>();

  constructor(private readonly deps: Pick<HostDeps, 'store' | 'artifacts' | 'evaluatorSandbox'>) {}

  /** Runs `work` with the job's evaluator (warm or opened now); it idles afterwards. */
  async use<T>(
    plan: TrainingPlan & { rft: RftSettings },
    podJobId: string,
    work: (evaluate: Evaluate) => Promise<T>,
  ): Promise<T> {
    this.jobOfPod.set(podJobId, plan.jobName);
    const evaluator = await this.evaluator(plan);
    try {
      return await work(evaluator.evaluate);
    } finally {
      const entry = this.open.get(plan.jobName);
      if (entry) {
        entry.idle = setTimeout(() => void this.close(plan.jobName), IDLE_MS);
        entry.idle.unref();
      }
    }
  }

  /** The pod stopped: its job's evaluator goes with it. */
  async podStopped(podJobId: string): Promise<void> {
    const job = this.jobOfPod.get(podJobId);
    this.jobOfPod.delete(podJobId);
    if (job) await this.close(job);
  }

  private evaluator(plan: TrainingPlan & { rft: RftSettings }): Promise<Evaluator> {
    let entry = this.open.get(plan.jobName);
    if (entry) clearTimeout(entry.idle);
    else {
      const evaluator = openEvaluator(
        evaluatorName(plan.rft.evaluator, plan.account),
        {
          store: this.deps.store,
          artifacts: this.deps.artifacts,
          ...(this.deps.evaluatorSandbox ? { settings: this.deps.evaluatorSandbox } : {}),
        },
        { wallMs: plan.rft.rolloutTimeoutMs },
      );
      entry = { evaluator };
      this.open.set(plan.jobName, entry);
      evaluator.catch(() => this.open.delete(plan.jobName));
    }
    return entry.evaluator;
  }

  private async close(jobName: string): Promise<void> {
    const entry = this.open.get(jobName);
    if (!entry) return;
    this.open.delete(jobName);
    clearTimeout(entry.idle);
    await (await entry.evaluator.catch(() => null))?.close();
  }
}

/**
 * What the host activities share: their dependencies and small helpers (pod ids, the
 * learning-rate schedule, per-process caches, timed heartbeats).
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { Runtime } from '@temporalio/worker';
import type { ObjectStore } from '../../checkpoints/object-store/index.js';
import type { DeploymentRegistry } from '../../deployments/registry.js';
import type { SandboxSettings } from '../../evaluators/index.js';
import { learningRateAt as scheduledRate } from '../../recipes/index.js';
import type { ServiceClient } from '../../sdk/service-client.js';
import type { TrainingClient } from '../../sdk/training-client.js';
import type { TrainingDatum } from '../../sdk/types.js';
import type { Store } from '../../store/index.js';
import type { TrainerError } from '../../trainer/index.js';
import type { Launcher } from '../../trainer/launcher/index.js';
import type { TrainingPlan } from '../types.js';
import type { RolloutTracer } from './remote-rollouts.js';

export interface HostDeps {
  store: Store;
  /** Where this host runs RFT jobs' rollout deployments. */
  deployments: DeploymentRegistry;
  /** Model calls of remote-environment rollouts come through here. */
  tracer: RolloutTracer;
  launcher: Launcher;
  artifacts: ObjectStore;
  /** Checkpoint store root the pods share. */
  checkpointUrl: string;
  hostQueue: string;
  /** Engine threads per pod. */
  threads?: number;
  /** Limits of RFT evaluator sandboxes (default: the schema's defaults). */
  evaluatorSandbox?: SandboxSettings;
}

export const POD_INACTIVITY_MS = 10 * 60_000;

export interface Session {
  service: ServiceClient;
  client: TrainingClient;
  /** RFT with a KL term: the frozen reference (the pod's base with the adapter off, or a pod). */
  reference?: Promise<TrainingClient>;
}

/** Pod job ids: readable, unique per (job, attempt), within the 63-character limit. */
export function podJobId(jobName: string, attempt: number): string {
  return `${podJobIdBase(jobName)}-t${attempt}`;
}

/** The part of a job's pod ids every attempt shares. */
export function podJobIdBase(jobName: string): string {
  const id = jobName.split('/').pop()!.slice(0, 40).replace(/-+$/, '');
  const hash = createHash('sha256').update(jobName).digest('hex').slice(0, 6);
  return `${id}-${hash}`;
}

/** One promise per key; a failed one is forgotten so the next call retries. */
export function cached<T>(
  map: Map<string, Promise<T>>,
  key: string,
  make: () => Promise<T>,
): Promise<T> {
  let pending = map.get(key);
  if (!pending) {
    pending = make();
    pending.catch(() => map.delete(key));
    map.set(key, pending);
  }
  return pending;
}

export function evaluatorName(name: string, account: string): string {
  return name.includes('/') ? name : `accounts/${account}/evaluators/${name}`;
}

/**
 * Heartbeats every 2 s while `work` runs, whatever its steps take: the workflow's heartbeat
 * timeout then measures whether this host is alive, not how long a step is.
 */
export async function withHeartbeats<T>(work: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  const timer = setInterval(() => ctx.heartbeat(), 2_000);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/** The step's rate: linear warm-up over `warmupSteps`, then constant (recipes' schedule). */
export function learningRateAt(plan: TrainingPlan, step: number): number {
  return scheduledRate(
    {
      kind: 'constant',
      warmupSteps: plan.warmupSteps,
      minRatio: 0,
      peak: plan.learningRate,
      totalSteps: plan.totalSteps,
    },
    step,
  );
}

export function weightSum(batch: readonly TrainingDatum[]): number {
  let total = 0;
  for (const d of batch) {
    const w = d.lossFnInputs.weights;
    if (Array.isArray(w)) for (const x of w as number[]) total += x;
  }
  return total;
}

/**
 * The base model a pod is launched with: catalog models by name, others (models imported into
 * or promoted in an account) by path, with their name beside it so that checkpoints and
 * exports record the model and not a path on this host.
 */
export function podBaseModel(
  name: string,
  dir: string,
): { baseModel: string; baseModelName?: string } {
  return name.startsWith('accounts/temper/')
    ? { baseModel: name }
    : { baseModel: dir, baseModelName: name };
}

/**
 * Where a host's trainer sessions report errors of their background calls (heartbeats to a pod
 * that died, say): the worker's Temporal log, at warning level, instead of the SDK's default
 * process warning. The job's workflow sees the same loss through its own activities and acts.
 */
export function logBackgroundError(error: TrainerError): void {
  Runtime.instance().logger.warn(error.message, { code: error.code });
}

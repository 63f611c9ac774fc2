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
import {
  adamW,
  MANAGED_JOB_ADAMW,
  type Schedule,
  type SupervisedMethod,
  type SupervisedSettings,
  learningRateAt as scheduledRate,
} from '../../recipes/index.js';

import type { ServiceClient } from '../../sdk/service-client.js';
import type { TrainingClient } from '../../sdk/training-client.js';
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

/** A managed job's schedule: linear warm-up over `warmupSteps`, then constant. */
export function scheduleOf(plan: TrainingPlan): Schedule {
  return {
    kind: 'constant',
    warmupSteps: plan.warmupSteps,
    minRatio: 0,
    peak: plan.learningRate,
    totalSteps: plan.totalSteps,
  };
}

/** The step's rate (recipes' schedule). */
export function learningRateAt(plan: TrainingPlan, step: number): number {
  return scheduledRate(scheduleOf(plan), step);
}

/**
 * A managed SFT, DPO or ORPO job as the recipes' supervised steps take it: the method's loss,
 * the job's schedule and the managed jobs' AdamW (beta2 0.999, clipping at 1).
 */
export function supervisedSettings(plan: TrainingPlan): SupervisedSettings {
  const method: SupervisedMethod =
    plan.method === 'dpo'
      ? { kind: 'dpo', beta: plan.beta }
      : plan.method === 'orpo'
        ? { kind: 'orpo', lambda: plan.orpoLambda }
        : { kind: 'sft' };
  return {
    method,
    schedule: scheduleOf(plan),
    adam: adamW({ learningRate: 0, ...MANAGED_JOB_ADAMW }),
    evalBatchTokens: plan.batchTokens,
  };
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

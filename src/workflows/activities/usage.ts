/**
 * What the platform meters (the billing export's rows): trainer time of managed jobs per
 * segment, rlorTrainerJob pods over their life, and rollout tokens of RFT steps. Ids name the
 * work (job, pod, steps), so a retried activity records nothing twice while a replay on a new
 * pod after preemption — real compute — is recorded again.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { countParameters, parseHfConfig } from '../../engine/config.js';
import {
  FINE_TUNING_USAGE,
  type Store,
  TEXT_COMPLETION_INFERENCE_USAGE,
  TRAINER_USAGE,
  usageEvent,
} from '../../store/index.js';

/** Trainer pods here run on CPU cores; a GPU launcher would report its accelerator. */
export const ACCELERATOR_TYPE = 'CPU';

const parameterCounts = new Map<string, number>();

export async function modelParameterCount(dir: string): Promise<number> {
  let n = parameterCounts.get(dir);
  if (n === undefined) {
    n = countParameters(
      parseHfConfig(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'))),
    );
    parameterCounts.set(dir, n);
  }
  return n;
}

export interface ComputeUsage {
  id: string;
  account: string;
  source: string;
  baseModel: string;
  modelDir: string;
  start: Date;
  end: Date;
}

function seconds(start: Date, end: Date): number {
  return Math.max(0, (end.getTime() - start.getTime()) / 1000);
}

export async function recordTrainingUsage(
  store: Store,
  u: ComputeUsage,
  usageType: typeof FINE_TUNING_USAGE | typeof TRAINER_USAGE = FINE_TUNING_USAGE,
): Promise<void> {
  await store.recordUsage([
    usageEvent({
      id: u.id,
      account: u.account,
      usageType,
      startTime: u.start,
      endTime: u.end,
      source: u.source,
      acceleratorType: ACCELERATOR_TYPE,
      acceleratorSeconds: seconds(u.start, u.end),
      baseModelName: u.baseModel,
      parameterCount: await modelParameterCount(u.modelDir),
    }),
  ]);
}

export { TRAINER_USAGE };

export async function recordRolloutTokens(
  store: Store,
  u: Omit<ComputeUsage, 'modelDir'> & { promptTokens: number; completionTokens: number },
): Promise<void> {
  await store.recordUsage([
    usageEvent({
      id: u.id,
      account: u.account,
      usageType: TEXT_COMPLETION_INFERENCE_USAGE,
      startTime: u.start,
      endTime: u.end,
      source: u.source,
      baseModelName: u.baseModel,
      promptTokens: u.promptTokens,
      completionTokens: u.completionTokens,
    }),
  ]);
}

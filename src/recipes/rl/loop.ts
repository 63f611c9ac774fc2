/**
 * The synchronous RL loop: every step (1) hot-loads the current policy into the sampling
 * deployment, (2) samples `completions_per_prompt` rollouts for each of the step's prompts,
 * (3) scores them and turns each group's rewards into z-score advantages, (4) updates the
 * policy with the configured loss. Checkpoints, resume and promotion as in every recipe.
 */
import type { PromotedModel } from '../../sdk/index.js';
import { peakLearningRate } from '../kit/base-config.js';
import { startPolicy } from '../kit/checkpoints.js';
import type { RecipeClients } from '../kit/clients.js';
import { batchIndices } from '../kit/data.js';
import { learningRateAt } from '../schedule.js';
import type { RlConfig } from './config.js';
import {
  epochSteps,
  meanReward,
  type Prompt,
  policyLossOf,
  readPrompts,
  referenceOf,
  rolloutDatums,
  rolloutMetrics,
  sampleRollouts,
  syncWeights,
  trainStep,
} from './steps.js';

export interface RlResult {
  steps: number;
  rewards: number[];
  resumedFrom?: string;
  model?: PromotedModel;
}

export async function run(config: RlConfig, clients: RecipeClients): Promise<RlResult> {
  const { service, tracker, log } = clients;

  // 1. prompts and the policy, restored from the log path
  const { prompts } = await readPrompts(config);
  const { policy, ckpt, resumed } = await startPolicy('rl', config, clients);
  let step = resumed?.step ?? 0;
  let consumed = resumed?.dataConsumed ?? 0;
  const loss = policyLossOf(config);
  const reference = await referenceOf(config, service);
  // With epochs, the managed RFT jobs' plan: a managed job is this loop (src/workflows).
  const plan =
    config.epochs === undefined
      ? undefined
      : epochSteps(prompts.length, {
          epochs: config.epochs,
          seed: config.seed,
          chunkSize: config.prompt_groups_per_step,
        });
  const maxSteps = Math.min(config.max_steps, plan?.length ?? config.max_steps);
  const schedule = {
    ...config.lr_schedule,
    peak: peakLearningRate(config),
    totalSteps: maxSteps,
  };

  // 2. sync → rollouts → advantages → update, every step
  const rewards: number[] = [];
  while (step < maxSteps) {
    const t0 = performance.now();
    const sync = { saveS: 0, hotLoadS: 0 };
    const sampler = await syncWeights(policy, service, step, sync);
    const t1 = performance.now();
    const batch = (
      plan?.[step]?.prompts ??
      batchIndices(prompts.length, consumed, config.prompt_groups_per_step, config.seed)
    ).map((i) => prompts[i] as Prompt);
    const rollouts = await sampleRollouts(sampler, batch, config, step, step);
    const t2 = performance.now();
    const lr = learningRateAt(schedule, step);
    const out = await trainStep(policy, rolloutDatums(rollouts), loss, config.adam, lr, reference);
    const t3 = performance.now();
    consumed += batch.length;
    step += 1;
    const reward = meanReward(rollouts);
    rewards.push(reward);
    await tracker.logMetrics(step, {
      ...rolloutMetrics(rollouts, out),
      'learning_rate:last': lr,
      'step_time_s:last': (t3 - t0) / 1000,
      // the step's parts: weight sync (save + hot-load), rollouts, update
      'sync_time_s:last': (t1 - t0) / 1000,
      'save_time_s:last': sync.saveS,
      'hot_load_time_s:last': sync.hotLoadS,
      'rollout_time_s:last': (t2 - t1) / 1000,
      'train_time_s:last': (t3 - t2) / 1000,
    });
    log.info({ step, reward }, 'rl step');
    await ckpt.saveOnInterval(config.dcp_save_interval, step, maxSteps, consumed);
  }

  // 3. final checkpoint, promotion
  return { steps: step, rewards, ...(await ckpt.finish(step, consumed, config, resumed)) };
}

/**
 * The ORPO loop: per step the next `batch_size` preference pairs of the seeded order, the ORPO
 * loss (SFT on the chosen response + λ · odds-ratio term; src/losses) as a custom loss, and an
 * AdamW step. No reference model. Loss summed over pairs, so the step normalises per pair.
 */

import { orpoLoss } from '../../losses/index.js';
import type { TrainingDatum } from '../../sdk/index.js';
import type { PreferenceResult } from '../dpo/loop.js';
import { readPreferencePairs } from '../dpo/pairs.js';
import { peakLearningRate } from '../kit/base-config.js';
import { startPolicy } from '../kit/checkpoints.js';
import type { RecipeClients } from '../kit/clients.js';
import { batchIndices, modelRenderer } from '../kit/data.js';
import { adamW } from '../optimizer.js';
import { learningRateAt } from '../schedule.js';
import type { OrpoConfig } from './config.js';

export async function run(config: OrpoConfig, clients: RecipeClients): Promise<PreferenceResult> {
  const { tracker, log } = clients;

  // 1. data
  const renderer = await modelRenderer(config.base_model);
  const pairs = await readPreferencePairs(
    config.dataset,
    renderer,
    config.max_seq_len ?? undefined,
  );
  const stepsPerEpoch = Math.max(1, Math.floor(pairs.length / config.batch_size));
  const totalSteps = config.max_steps ?? Math.ceil(config.epochs * stepsPerEpoch);

  // 2. policy, restored from the log path
  const { policy, ckpt, resumed } = await startPolicy('orpo', config, clients);
  let step = resumed?.step ?? 0;
  let consumed = resumed?.dataConsumed ?? 0;
  const schedule = { ...config.lr_schedule, peak: peakLearningRate(config), totalSteps };
  const loss = orpoLoss({ lambda: config.orpo_lambda });

  // 3. train
  const losses: number[] = [];
  while (step < totalSteps) {
    const picked = batchIndices(pairs.length, consumed, config.batch_size, config.seed);
    const batch: TrainingDatum[] = picked.flatMap((i) => {
      const p = pairs[i] as (typeof pairs)[number];
      return [p.chosen, p.rejected];
    });
    const fb = await policy.forwardBackwardCustom(batch, loss);
    const lr = learningRateAt(schedule, step);
    const opt = await policy.optimStep(
      adamW({ ...config.adam, learningRate: lr }),
      'num_sequences',
    );
    consumed += picked.length;
    step += 1;
    const perPair = fb.loss / picked.length;
    losses.push(perPair);
    await tracker.logMetrics(step, {
      ...fb.metrics,
      'loss:mean': perPair,
      'grad_norm:last': opt.gradNorm,
      'learning_rate:last': lr,
    });
    log.info({ step, loss: perPair }, 'orpo step');
    await ckpt.saveOnInterval(config.dcp_save_interval, step, totalSteps, consumed);
  }

  // 4. final checkpoint, promotion
  return { steps: step, losses, ...(await ckpt.finish(step, consumed, config, resumed)) };
}

/**
 * The SFT loop: render every conversation once, then per step take the next `batch_size`
 * conversations of the seeded order, forward-backward with cross-entropy, and step AdamW with
 * the scheduled rate (gradients normalised per loss token). Resumable checkpoints every
 * `dcp_save_interval` steps, a resumable + promotable one at the end, promotion to
 * `output_model_id`.
 */
import { z } from 'zod';
import { conversationTrainingDatum, type PromotedModel } from '../../sdk/index.js';
import { messagesSchema } from '../../tokenizers/index.js';
import { peakLearningRate } from '../kit/base-config.js';
import { startPolicy } from '../kit/checkpoints.js';
import type { RecipeClients } from '../kit/clients.js';
import { batchIndices, modelRenderer, readRows } from '../kit/data.js';
import { adamW } from '../optimizer.js';
import { learningRateAt } from '../schedule.js';
import type { SftConfig } from './config.js';

export interface SftResult {
  steps: number;
  losses: number[];
  resumedFrom?: string;
  model?: PromotedModel;
}

export async function run(config: SftConfig, clients: RecipeClients): Promise<SftResult> {
  const { tracker, log } = clients;

  // 1. data: conversations → target-token datums with the renderer's loss weights
  const renderer = await modelRenderer(config.base_model);
  const rows = await readRows(config.dataset, z.object({ messages: messagesSchema }).passthrough());
  const data = rows.map((r) =>
    conversationTrainingDatum(renderer, r.messages, { maxLength: config.max_seq_len ?? undefined }),
  );
  const stepsPerEpoch = Math.max(1, Math.floor(data.length / config.batch_size));
  const totalSteps = config.max_steps ?? Math.ceil(config.epochs * stepsPerEpoch);

  // 2. the policy, restored from this log path (or init_from_checkpoint)
  const { policy, ckpt, resumed } = await startPolicy('sft', config, clients);
  let step = resumed?.step ?? 0;
  let consumed = resumed?.dataConsumed ?? 0;
  const schedule = { ...config.lr_schedule, peak: peakLearningRate(config), totalSteps };

  // 3. train
  const losses: number[] = [];
  while (step < totalSteps) {
    const batch = batchIndices(data.length, consumed, config.batch_size, config.seed).map(
      (i) => data[i] as (typeof data)[number],
    );
    const fb = await policy.forwardBackward(batch, 'cross_entropy');
    const lr = learningRateAt(schedule, step);
    const opt = await policy.optimStep(
      adamW({ ...config.adam, learningRate: lr }),
      'num_loss_tokens',
    );
    consumed += batch.length;
    step += 1;
    const loss = (fb.metrics['loss:sum'] ?? Number.NaN) / Math.max(opt.numLossTokens, 1);
    losses.push(loss);
    await tracker.logMetrics(step, {
      'loss:mean': loss,
      'grad_norm:last': opt.gradNorm,
      'learning_rate:last': lr,
      'num_loss_tokens:sum': opt.numLossTokens,
    });
    log.info({ step, loss }, 'sft step');
    await ckpt.saveOnInterval(config.dcp_save_interval, step, totalSteps, consumed);
  }

  // 4. final checkpoint, promotion
  return { steps: step, losses, ...(await ckpt.finish(step, consumed, config, resumed)) };
}

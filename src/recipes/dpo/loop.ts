/**
 * The DPO loop: render the pairs, cache the frozen reference's logprobs of every chosen and
 * rejected sequence once, then per step take the next `batch_size` pairs of the seeded order
 * and run the DPO loss (src/losses) as a custom loss — logprobs from the policy, the loss and
 * its gradient here, the backward pass on the trainer — and an AdamW step.
 */

import { dpoLoss, FIELDS } from '../../losses/index.js';
import type { PromotedModel, TrainingDatum } from '../../sdk/index.js';
import { peakLearningRate } from '../kit/base-config.js';
import { startPolicy } from '../kit/checkpoints.js';
import type { RecipeClients } from '../kit/clients.js';
import { batchIndices, modelRenderer } from '../kit/data.js';
import { adamW } from '../optimizer.js';
import { learningRateAt } from '../schedule.js';
import type { DpoConfig } from './config.js';
import { type PreferencePair, readPreferencePairs } from './pairs.js';

export interface PreferenceResult {
  steps: number;
  losses: number[];
  resumedFrom?: string;
  model?: PromotedModel;
}

/** Reference logprobs of each datum, computed in chunks of `chunk` sequences. */
async function referenceLogprobs(
  forward: (
    d: TrainingDatum[],
  ) => Promise<{ lossFnOutputs: { logprobs: { data: ArrayLike<number> } }[] }>,
  datums: TrainingDatum[],
  chunk = 32,
): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < datums.length; i += chunk) {
    const res = await forward(datums.slice(i, i + chunk));
    for (const o of res.lossFnOutputs) out.push(Array.from(o.logprobs.data));
  }
  return out;
}

export async function run(config: DpoConfig, clients: RecipeClients): Promise<PreferenceResult> {
  const { service, tracker, log } = clients;

  // 1. data: [chosen, rejected] pairs
  const renderer = await modelRenderer(config.base_model);
  const pairs: PreferencePair[] = await readPreferencePairs(
    config.dataset,
    renderer,
    config.max_seq_len ?? undefined,
  );
  const stepsPerEpoch = Math.max(1, Math.floor(pairs.length / config.batch_size));
  const totalSteps = config.max_steps ?? Math.ceil(config.epochs * stepsPerEpoch);

  // 2. policy (restored from the log path) and the frozen reference's cached logprobs
  const { policy, ckpt, resumed } = await startPolicy('dpo', config, clients);
  let step = resumed?.step ?? 0;
  let consumed = resumed?.dataConsumed ?? 0;
  const reference = await service.createReferenceClient();
  const flat = pairs.flatMap((p) => [p.chosen, p.rejected]);
  const ref = await referenceLogprobs((d) => reference.forward(d), flat);
  const schedule = { ...config.lr_schedule, peak: peakLearningRate(config), totalSteps };
  const loss = dpoLoss({ beta: config.beta });

  // 3. train
  const losses: number[] = [];
  while (step < totalSteps) {
    const picked = batchIndices(pairs.length, consumed, config.batch_size, config.seed);
    const batch = picked.flatMap((i) =>
      [2 * i, 2 * i + 1].map((k) => {
        const d = flat[k] as TrainingDatum;
        return {
          ...d,
          lossFnInputs: { ...d.lossFnInputs, [FIELDS.refLogprobs]: ref[k] as number[] },
        };
      }),
    );
    const fb = await policy.forwardBackwardCustom(batch, loss);
    const lr = learningRateAt(schedule, step);
    const opt = await policy.optimStep(adamW({ ...config.adam, learningRate: lr }));
    consumed += picked.length;
    step += 1;
    losses.push(fb.loss);
    await tracker.logMetrics(step, {
      ...fb.metrics,
      'loss:mean': fb.loss,
      'grad_norm:last': opt.gradNorm,
      'learning_rate:last': lr,
    });
    log.info({ step, loss: fb.loss }, 'dpo step');
    await ckpt.saveOnInterval(config.dcp_save_interval, step, totalSteps, consumed);
  }

  // 4. final checkpoint, promotion
  return { steps: step, losses, ...(await ckpt.finish(step, consumed, config, resumed)) };
}

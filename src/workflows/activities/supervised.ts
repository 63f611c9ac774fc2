/**
 * The step of a managed supervised or preference job (SFT, DPO, ORPO) and its held-out loss:
 * each method's loss over the step's micro-batches (src/losses), then one AdamW step of the
 * managed jobs' optimizer (src/recipes MANAGED_JOB_ADAMW) at the schedule's rate. Plain
 * functions of the plan and the Training API client; the host activity calls them.
 */
import { constant, dpoLoss, orpoLoss } from '../../losses/index.js';
import { MANAGED_JOB_ADAMW } from '../../recipes/index.js';
import type { TrainingClient } from '../../sdk/training-client.js';
import { type TrainingDatum, toLossDatum } from '../../sdk/types.js';
import type { TrainingPlan } from '../types.js';
import { learningRateAt, weightSum } from './host-support.js';

/** One optimizer step over `micro` (the step's micro-batches); its metrics. */
export async function supervisedStep(
  plan: TrainingPlan,
  client: TrainingClient,
  micro: TrainingDatum[][],
  step: number,
) {
  let loss = 0;
  let tokens = 0;
  const metrics: Record<string, number> = {};
  for (const batch of micro) {
    if (plan.method === 'sft') {
      const out = await client.forwardBackward(batch, 'cross_entropy');
      loss += out.metrics['loss:sum'] ?? 0;
      tokens += weightSum(batch);
    } else if (plan.method === 'orpo') {
      // The ORPO loss sums over the batch's pairs (no reference model).
      const out = await client.forwardBackwardCustom(batch, orpoLoss({ lambda: plan.orpoLambda }));
      loss += out.loss;
      tokens += batch.length / 2;
      for (const [k, v] of Object.entries(out.metrics)) metrics[k] = v;
    } else {
      const out = await client.forwardBackwardCustom(batch, dpoLoss({ beta: plan.beta }));
      loss += out.loss;
      tokens += 1;
      for (const [k, v] of Object.entries(out.metrics)) metrics[k] = v;
    }
  }
  const learningRate = learningRateAt(plan, step);
  await client.optimStep(
    { learningRate, ...MANAGED_JOB_ADAMW },
    plan.method === 'sft' ? 'num_loss_tokens' : 'num_sequences',
  );
  return { ...metrics, 'loss:mean': loss / Math.max(tokens, 1), learning_rate: learningRate };
}

/** The held-out loss of the job's method (eval datums: SFT examples or preference pairs). */
export function heldOutLoss(plan: TrainingPlan, client: TrainingClient, datums: TrainingDatum[]) {
  if (plan.method === 'dpo') return evalDpoLoss(plan, client, datums);
  if (plan.method === 'orpo') return evalOrpoLoss(plan, client, datums);
  return evalLoss(plan, client, datums);
}

/** Token-mean cross-entropy of the held-out datums, in micro-batches of the job's size. */
async function evalLoss(plan: TrainingPlan, client: TrainingClient, datums: TrainingDatum[]) {
  let loss = 0;
  let tokens = 0;
  for (let i = 0; i < datums.length; ) {
    const batch: TrainingDatum[] = [];
    let size = 0;
    while (i < datums.length && (batch.length === 0 || size < plan.batchTokens)) {
      const d = datums[i++]!;
      size += (d.modelInput as readonly number[]).length;
      batch.push(d);
    }
    const out = await client.forward(batch, 'cross_entropy');
    loss += out.metrics['loss:sum'] ?? 0;
    tokens += weightSum(batch);
  }
  return loss / Math.max(tokens, 1);
}

/** DPO loss of the held-out pairs (against their cached reference logprobs). */
async function evalDpoLoss(plan: TrainingPlan, client: TrainingClient, pairs: TrainingDatum[]) {
  const out = await client.forward(pairs);
  const logprobs = out.lossFnOutputs.map((o) => constant(o.logprobs.data as ArrayLike<number>));
  const { loss } = dpoLoss({ beta: plan.beta })(pairs.map(toLossDatum), logprobs);
  return loss.item();
}

/** Mean ORPO loss per held-out pair. */
async function evalOrpoLoss(plan: TrainingPlan, client: TrainingClient, pairs: TrainingDatum[]) {
  const out = await client.forward(pairs);
  const logprobs = out.lossFnOutputs.map((o) => constant(o.logprobs.data as ArrayLike<number>));
  const { loss } = orpoLoss({ lambda: plan.orpoLambda })(pairs.map(toLossDatum), logprobs);
  return loss.item() / Math.max(pairs.length / 2, 1);
}

/**
 * The supervised methods' training steps — SFT (cross-entropy), DPO and ORPO (custom losses
 * from src/losses) — defined once: the sft, dpo and orpo recipes' `run()` loops and managed
 * jobs' host activities both call `trainSupervisedSteps`, so a managed job and the recipe with
 * the same settings train the same weights and log the same metrics, bit for bit.
 *
 * A step: each micro-batch's forward-backward with the method's loss (gradients accumulate on
 * the trainer), then one AdamW step at the schedule's rate. The held-out loss is evaluated at
 * the end of each call (checkpoint boundaries and the end of the run).
 */
import { constant, dpoLoss, FIELDS, orpoLoss } from '../../losses/index.js';
import type { TrainingClient } from '../../sdk/training-client.js';
import { type TrainingDatum, toLossDatum } from '../../sdk/types.js';
import { type AdamWConfig, adamW } from '../optimizer.js';
import { learningRateAt, type Schedule } from '../schedule.js';
import type { StepBatches } from './supervised-data.js';

export type SupervisedMethod =
  | { kind: 'sft' }
  | { kind: 'dpo'; beta: number }
  | { kind: 'orpo'; lambda: number };

/** What a supervised run steps with, besides its data. */
export interface SupervisedSettings {
  method: SupervisedMethod;
  /** The learning rate of each step (peak, warm-up, decay over the run's steps). */
  schedule: Schedule;
  /** AdamW's settings but the rate. */
  adam: Omit<AdamWConfig, 'learningRate'>;
  /** Token budget of one held-out forward micro-batch. */
  evalBatchTokens: number;
}

const REFERENCE_CHUNK = 64;

export function weightSum(batch: readonly TrainingDatum[]): number {
  let total = 0;
  for (const d of batch) {
    const w = d.lossFnInputs.weights;
    if (Array.isArray(w)) for (const x of w as number[]) total += x;
  }
  return total;
}

/** One optimizer step (0-based `step`) over its micro-batches; the step's metrics. */
export async function supervisedStep(
  s: SupervisedSettings,
  policy: TrainingClient,
  micro: StepBatches,
  step: number,
): Promise<Record<string, number>> {
  const { method } = s;
  let loss = 0;
  let units = 0;
  const metrics: Record<string, number> = {};
  for (const batch of micro) {
    if (method.kind === 'sft') {
      const out = await policy.forwardBackward(batch, 'cross_entropy');
      loss += out.metrics['loss:sum'] ?? 0;
      units += weightSum(batch);
    } else if (method.kind === 'orpo') {
      // The ORPO loss sums over the batch's pairs (no reference model): a mean per pair.
      const out = await policy.forwardBackwardCustom(batch, orpoLoss({ lambda: method.lambda }));
      loss += out.loss;
      units += batch.length / 2;
      Object.assign(metrics, out.metrics);
    } else {
      const out = await policy.forwardBackwardCustom(batch, dpoLoss({ beta: method.beta }));
      loss += out.loss;
      units += 1;
      Object.assign(metrics, out.metrics);
    }
  }
  const learningRate = learningRateAt(s.schedule, step);
  const opt = await policy.optimStep(
    adamW({ ...s.adam, learningRate }),
    method.kind === 'sft' ? 'num_loss_tokens' : 'num_sequences',
  );
  return {
    ...metrics,
    'loss:mean': loss / Math.max(units, 1),
    'grad_norm:last': opt.gradNorm,
    'learning_rate:last': learningRate,
  };
}

/** The method's held-out loss (SFT sequences, or [chosen, rejected] pairs). */
export async function heldOutLoss(
  s: SupervisedSettings,
  policy: TrainingClient,
  datums: TrainingDatum[],
): Promise<number> {
  const { method } = s;
  if (method.kind === 'sft') return sequenceLoss(s, policy, datums);
  const out = await policy.forward(datums);
  const logprobs = out.lossFnOutputs.map((o) => constant(o.logprobs.data as ArrayLike<number>));
  if (method.kind === 'dpo')
    return dpoLoss({ beta: method.beta })(datums.map(toLossDatum), logprobs).loss.item();
  const { loss } = orpoLoss({ lambda: method.lambda })(datums.map(toLossDatum), logprobs);
  return loss.item() / Math.max(datums.length / 2, 1);
}

/** Token-mean cross-entropy of held-out sequences, in micro-batches of `evalBatchTokens`. */
async function sequenceLoss(
  s: SupervisedSettings,
  policy: TrainingClient,
  datums: TrainingDatum[],
): Promise<number> {
  let loss = 0;
  let tokens = 0;
  for (let i = 0; i < datums.length; ) {
    const batch: TrainingDatum[] = [];
    let size = 0;
    while (i < datums.length && (batch.length === 0 || size < s.evalBatchTokens)) {
      const d = datums[i++]!;
      size += (d.modelInput as readonly number[]).length;
      batch.push(d);
    }
    const out = await policy.forward(batch, 'cross_entropy');
    loss += out.metrics['loss:sum'] ?? 0;
    tokens += weightSum(batch);
  }
  return loss / Math.max(tokens, 1);
}

/**
 * DPO: attaches each datum's reference logprobs (as `ref_logprobs`), computed by `forward` —
 * the frozen reference — in chunks of 64 sequences, unless `known` gives them (computed once
 * and kept by the caller). Returns them, in the datums' order.
 */
export async function attachReferenceLogprobs(
  datums: TrainingDatum[],
  forward: (d: TrainingDatum[]) => Promise<{ lossFnOutputs: { logprobs: { data: unknown } }[] }>,
  known?: number[][],
): Promise<number[][]> {
  let ref = known;
  if (!ref) {
    ref = [];
    for (let i = 0; i < datums.length; i += REFERENCE_CHUNK) {
      const out = await forward(datums.slice(i, i + REFERENCE_CHUNK));
      for (const o of out.lossFnOutputs) ref.push(Array.from(o.logprobs.data as ArrayLike<number>));
    }
  }
  datums.forEach((d, i) => {
    (d.lossFnInputs as Record<string, unknown>)[FIELDS.refLogprobs] = ref[i]!;
  });
  return ref;
}

/**
 * Steps [from, to) of a run whose step batches `batches` gives: each step's metrics go to
 * `onStep` (the recipe's tracker, a managed job's metric rows), and the held-out loss of the
 * weights after step `to` joins that step's metrics. `signal` stops between steps.
 */
export async function trainSupervisedSteps(
  s: SupervisedSettings,
  policy: TrainingClient,
  data: { batches: (step: number) => StepBatches; eval: TrainingDatum[] },
  range: { from: number; to: number; signal?: AbortSignal },
  onStep: (step: number, metrics: Record<string, number>) => Promise<void> | void,
): Promise<void> {
  for (let step = range.from; step < range.to; step++) {
    if (range.signal?.aborted) throw range.signal.reason;
    const metrics = await supervisedStep(s, policy, data.batches(step), step);
    if (step + 1 === range.to && data.eval.length > 0)
      metrics['eval_loss:mean'] = await heldOutLoss(s, policy, data.eval);
    await onStep(step + 1, metrics);
  }
}

/**
 * Gradient-accumulation normalisation for optim_step. Several forward_backward calls add their
 * gradients; the step then divides by
 *
 *   num_loss_tokens   the tokens with a non-zero backward weight since the last step
 *   num_sequences     the sequences with at least one such token
 *   none              nothing (the loss already is a mean)
 *
 * A token's backward weight is what the engine multiplies d(logprob) by: a cross_entropy
 * datum's `weights`, or -d(loss)/d(logprob) for a custom loss. Use exactly one normalisation:
 * raw-sum losses (RL) take num_loss_tokens, losses that are already means (SFT, DPO, ORPO)
 * take none — normalising twice shrinks the step.
 */
import { configError } from './errors.js';

export const GRAD_ACC_NORMALIZATIONS = ['num_loss_tokens', 'num_sequences', 'none'] as const;
export type GradAccNormalization = (typeof GRAD_ACC_NORMALIZATIONS)[number];

export const DEFAULT_GRAD_ACC_NORMALIZATION = {
  sft: 'none',
  dpo: 'none',
  orpo: 'none',
  rl: 'num_loss_tokens',
} as const satisfies Record<string, GradAccNormalization>;

export function parseGradAccNormalization(value: string | null | undefined): GradAccNormalization {
  if (value === undefined || value === null || value === '') return 'none';
  if ((GRAD_ACC_NORMALIZATIONS as readonly string[]).includes(value)) {
    return value as GradAccNormalization;
  }
  throw configError(
    `grad_accumulation_normalization must be one of ${GRAD_ACC_NORMALIZATIONS.join(', ')}, got '${value}'`,
  );
}

/** Tokens with a non-zero weight, over all the given per-datum weight vectors. */
export function countLossTokens(weights: readonly ArrayLike<number>[]): number {
  let n = 0;
  for (const w of weights) for (let j = 0; j < w.length; j++) if (w[j] !== 0) n++;
  return n;
}

/** Sequences with at least one non-zero weight. */
export function countLossSequences(weights: readonly ArrayLike<number>[]): number {
  let n = 0;
  for (const w of weights) {
    for (let j = 0; j < w.length; j++) {
      if (w[j] !== 0) {
        n++;
        break;
      }
    }
  }
  return n;
}

/** The factor gradients are multiplied by at the step (1 when nothing was counted). */
export function gradAccumulationScale(
  mode: GradAccNormalization,
  counts: { tokens: number; sequences: number },
): number {
  const divisor =
    mode === 'num_loss_tokens' ? counts.tokens : mode === 'num_sequences' ? counts.sequences : 1;
  return divisor > 0 ? 1 / divisor : 1;
}

/** Counts loss tokens and sequences across the micro-batches of one optimizer step. */
export class GradAccumulationCounter {
  tokens = 0;
  sequences = 0;
  microBatches = 0;

  /** Records one forward_backward call's per-datum backward weights. */
  add(weights: readonly ArrayLike<number>[]): void {
    this.tokens += countLossTokens(weights);
    this.sequences += countLossSequences(weights);
    this.microBatches++;
  }

  scale(mode: GradAccNormalization): number {
    return gradAccumulationScale(mode, this);
  }

  /** After optim_step: the next step counts from zero. */
  reset(): void {
    this.tokens = 0;
    this.sequences = 0;
    this.microBatches = 0;
  }
}

/** The loss signature shared by trainer pods (built-in losses) and user loops (custom losses). */
import type { Vector } from './autodiff/vector.js';
import type { LossDatum } from './datum.js';
import type { Metrics } from './metrics.js';

export interface LossOutput {
  /** A length-1 vector, differentiable with respect to the logprob vectors. */
  loss: Vector;
  /** Numbers for logging, keyed `name:reduction`. */
  metrics: Metrics;
}

/**
 * `(data, logprobs) => {loss, metrics}`: `logprobs[i]` holds the current policy's per-token
 * logprobs of `data[i]` (target coordinates), as leaves of the autodiff.
 */
export type LossFn = (data: readonly LossDatum[], logprobs: readonly Vector[]) => LossOutput;

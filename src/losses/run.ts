/**
 * Running a loss: wrap each datum's logprobs as an autodiff leaf, call the loss, back-propagate,
 * and hand back d(loss)/d(logprob) per datum — what a trainer pod feeds the engine's backward
 * and what forward_backward_custom sends to the pod. Inputs and outputs are checked here so
 * every loss (built-in or user-written) fails the same clear way.
 */
import { backward, param, type Vector } from './autodiff/vector.js';
import { assertFinite, FIELDS, type LossDatum, readTensor, type TensorData } from './datum.js';
import { inputError, LossError } from './errors.js';
import { type Metrics, normalizeMetrics } from './metrics.js';
import type { LossFn } from './types.js';

export interface LossFnOutput {
  /** The datum's logprobs, shaped like its target_tokens ([N] or [N, K]). */
  logprobs: TensorData;
}

export interface ForwardResult {
  loss: number;
  metrics: Metrics;
  loss_fn_outputs: LossFnOutput[];
}

export interface ForwardBackwardResult extends ForwardResult {
  /** d(loss)/d(logprobs[i]) for each datum, same length as its logprobs. */
  grads: Float64Array[];
}

function leaves(data: readonly LossDatum[], logprobs: readonly ArrayLike<number>[]): Vector[] {
  if (data.length !== logprobs.length) {
    throw new LossError(
      'invalid_loss_input',
      `got ${data.length} datums but ${logprobs.length} logprob vectors; there must be one per datum`,
    );
  }
  return logprobs.map((lp, i) => {
    assertFinite(lp, i, FIELDS.logprobs);
    return param(lp);
  });
}

function evaluate(
  lossFn: LossFn,
  data: readonly LossDatum[],
  lps: readonly Vector[],
): { loss: Vector; metrics: Metrics } {
  const out = lossFn(data, lps);
  if (
    out === null ||
    typeof out !== 'object' ||
    !out.loss ||
    !(out.loss.value instanceof Float64Array)
  ) {
    throw new LossError('invalid_loss_output', 'a loss function must return {loss, metrics}');
  }
  if (out.loss.length !== 1) {
    throw new LossError(
      'invalid_loss_output',
      `the loss must be a scalar (length-1 vector), got ${out.loss.length} values; reduce it with sum() or mean()`,
    );
  }
  const value = out.loss.item();
  if (!Number.isFinite(value)) {
    throw new LossError(
      'invalid_loss_output',
      `the loss is ${value}; check the inputs for extreme logprob differences`,
    );
  }
  return { loss: out.loss, metrics: normalizeMetrics(out.metrics ?? {}) };
}

function outputs(data: readonly LossDatum[], lps: readonly Vector[]): LossFnOutput[] {
  return lps.map((lp, i) => {
    const targets = readTensor(data[i]!, FIELDS.targetTokens, i);
    const shape = targets && targets.data.length === lp.length ? [...targets.shape] : [lp.length];
    return { logprobs: { data: lp.value, shape, dtype: 'float64' } };
  });
}

/** The loss and metrics without a backward pass (forward-only, e.g. evaluation). */
export function forward(
  lossFn: LossFn,
  data: readonly LossDatum[],
  logprobs: readonly ArrayLike<number>[],
): ForwardResult {
  const lps = leaves(data, logprobs);
  const { loss, metrics } = evaluate(lossFn, data, lps);
  return { loss: loss.item(), metrics, loss_fn_outputs: outputs(data, lps) };
}

export function forwardBackward(
  lossFn: LossFn,
  data: readonly LossDatum[],
  logprobs: readonly ArrayLike<number>[],
): ForwardBackwardResult {
  const lps = leaves(data, logprobs);
  const { loss, metrics } = evaluate(lossFn, data, lps);
  backward(loss);
  const grads = lps.map((lp, i) => {
    const g = lp.grad ?? new Float64Array(lp.length);
    for (let j = 0; j < g.length; j++) {
      const v = g[j]!;
      if (v - v !== 0) {
        throw inputError(
          i,
          FIELDS.logprobs,
          `d(loss)/d(logprobs)[${j}] is ${v}; the loss is not differentiable at these inputs`,
        );
      }
    }
    return g;
  });
  return { loss: loss.item(), metrics, loss_fn_outputs: outputs(data, lps), grads };
}

/**
 * The datums a pod back-propagates for a custom loss: the built-in cross_entropy loss
 * (-Σ lp·w) with weights = -d(loss)/d(lp) has exactly the custom loss's gradient.
 */
export function crossEntropyBackwardDatums(
  data: readonly LossDatum[],
  grads: readonly Float64Array[],
): LossDatum[] {
  return data.map((d, i) => {
    const g = grads[i];
    const targets = readTensor(d, FIELDS.targetTokens, i);
    if (!g) throw inputError(i, FIELDS.weights, 'no gradient for this datum');
    if (!targets)
      throw inputError(i, FIELDS.targetTokens, `missing required field 'target_tokens'`);
    const weights = new Float64Array(g.length);
    for (let j = 0; j < g.length; j++) weights[j] = -g[j]!;
    return {
      ...(d.model_input ? { model_input: d.model_input } : {}),
      loss_fn_inputs: {
        target_tokens: { data: targets.data, shape: targets.shape },
        weights: { data: weights, shape: targets.shape },
      },
    };
  });
}

/**
 * On-policy distillation by sampled reverse KL. The student samples; a frozen teacher scores
 * the exact sampled tokens; the per-token advantage is the teacher-minus-student logprob gap
 *
 *   A_t = (teacher_t - sampling_t)·mask_t·scale     on response tokens, 0 elsewhere
 *
 * and the built-in `importance_sampling` loss (ratio_log_cap 20) maximises Σ r·A. Minimising
 * the sampled reverse KL, mean of (sampling - teacher), is what that gradient does.
 */
import { builtinLoss } from './builtin.js';
import { assertFinite, FIELDS, type LossDatum, readFloats, readTensor } from './datum.js';
import { inputError, LossError } from './errors.js';
import type { Metrics } from './metrics.js';
import type { LossFn } from './types.js';

export const DISTILLATION_RATIO_LOG_CAP = 20;

export interface ReverseKlAdvantageInput {
  /** Teacher logprobs of the sampled tokens, target coordinates. */
  teacher: ArrayLike<number>;
  /** Student sampling logprobs, same coordinates and length. */
  sampling: ArrayLike<number>;
  /** Full prompt token count: the first response logprob is at prompt_len - 1. */
  promptLen: number;
  /** Optional per-token loss mask (0 on tool or user tokens inside the response). */
  mask?: ArrayLike<number>;
  scale?: number;
}

export interface ReverseKlAdvantages {
  advantages: Float64Array;
  activeTokens: number;
  /** Σ (sampling - teacher)·mask over active tokens. */
  reverseKlSum: number;
  advantageSum: number;
}

export function sampledReverseKlAdvantages(
  input: ReverseKlAdvantageInput,
  index = 0,
): ReverseKlAdvantages {
  const { teacher, sampling, mask } = input;
  const scale = input.scale ?? 1;
  const n = sampling.length;
  if (teacher.length !== n) {
    throw inputError(
      index,
      'teacher_logprobs',
      `teacher logprobs have ${teacher.length} values but sampling logprobs ${n}`,
    );
  }
  if (mask && mask.length !== n) {
    throw inputError(index, FIELDS.weights, `mask has ${mask.length} values, expected ${n}`);
  }
  assertFinite(teacher, index, 'teacher_logprobs');
  assertFinite(sampling, index, 'sampling_logprobs');
  const out: ReverseKlAdvantages = {
    advantages: new Float64Array(n),
    activeTokens: 0,
    reverseKlSum: 0,
    advantageSum: 0,
  };
  for (let j = Math.max(0, input.promptLen - 1); j < n; j++) {
    const m = mask ? mask[j]! : 1;
    if (m <= 0) continue;
    const gap = (teacher[j]! - sampling[j]!) * m;
    const a = gap * scale;
    out.advantages[j] = a;
    out.activeTokens++;
    out.reverseKlSum -= gap;
    out.advantageSum += a;
  }
  return out;
}

/**
 * Datums for the built-in importance_sampling loss: target_tokens, sampling logprobs (from each
 * datum's loss_fn_inputs.logprobs) and the reverse-KL advantages. The datum's `weights`, if
 * any, act as the mask and are then folded into the advantages.
 */
export function buildDistillationDatums(
  data: readonly LossDatum[],
  teacherLogprobs: readonly ArrayLike<number>[],
  promptLens: readonly number[],
  options: { scale?: number } = {},
): { datums: LossDatum[]; metrics: Metrics } {
  if (teacherLogprobs.length !== data.length || promptLens.length !== data.length) {
    throw new LossError(
      'invalid_loss_input',
      `distillation needs one teacher row and prompt length per datum: ${data.length} datums, ${teacherLogprobs.length} teacher rows, ${promptLens.length} prompt lengths`,
    );
  }
  let active = 0;
  let klSum = 0;
  let advSum = 0;
  const datums = data.map((d, i) => {
    const targets = readTensor(d, FIELDS.targetTokens, i);
    if (!targets)
      throw inputError(i, FIELDS.targetTokens, `missing required field 'target_tokens'`);
    const n = targets.data.length;
    const sampling = readFloats(d, i, FIELDS.logprobs, n);
    if (!sampling)
      throw inputError(
        i,
        FIELDS.logprobs,
        'distillation needs the student sampling logprobs in loss_fn_inputs.logprobs',
      );
    const r = sampledReverseKlAdvantages(
      {
        teacher: teacherLogprobs[i]!,
        sampling,
        promptLen: promptLens[i]!,
        mask: readFloats(d, i, FIELDS.weights, n),
        scale: options.scale,
      },
      i,
    );
    active += r.activeTokens;
    klSum += r.reverseKlSum;
    advSum += r.advantageSum;
    return {
      ...(d.model_input ? { model_input: d.model_input } : {}),
      loss_fn_inputs: {
        target_tokens: targets.data,
        logprobs: sampling,
        advantages: r.advantages,
      },
    };
  });
  return {
    datums,
    metrics: {
      'opd_sampled_reverse_kl:mean': active > 0 ? klSum / active : 0,
      'opd_advantage:mean': active > 0 ? advSum / active : 0,
      'active_tokens:sum': active,
    },
  };
}

/** The loss distillation datums train with: built-in importance_sampling, log-ratio cap 20. */
export function distillationLoss(): LossFn {
  return builtinLoss('importance_sampling', { ratio_log_cap: DISTILLATION_RATIO_LOG_CAP });
}

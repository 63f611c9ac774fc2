/**
 * The data order of a managed job, as pure functions of (dataset, options, seed): the example
 * order of every epoch, the packing of whole sequences into token-budgeted steps, and the eval
 * split carved out when no evaluation dataset is given. Nothing here depends on time, on the
 * machine or on how far a job got, so "step k" names the same examples in every run, and a job
 * resumed from a checkpoint at step k recomputes the plan and continues with step k + 1 on
 * exactly the data an uninterrupted run would have seen.
 */

import { seededRandom } from '../util/seeded-random.js';

/** A 32-bit mix of two integers (murmur3 finaliser), so nearby seeds give unrelated streams. */
function mixSeed(a: number, b: number): number {
  let h = Math.imul((a ^ 0x9e3779b9) >>> 0, 0x85ebca6b) ^ b;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

// Salts keep the shuffles and the eval split independent for the same job seed.
const SHUFFLE_SALT = 0x5eed0001;
const EVAL_SALT = 0x5eed0002;

/** 0..n-1 in a seeded Fisher–Yates order. */
function permutation(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const rand = seededRandom(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

function requireCount(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`${what} must be a whole number >= 0 (got ${n})`);
  }
}

export interface EpochPlanOptions {
  /** Passes over the data; a fraction runs part of a last epoch. */
  epochs: number;
  /** Job seed: the same seed gives the same order. */
  seed: number;
}

/**
 * The example order of each epoch: epoch e is a shuffle seeded by (seed, e). A fractional last
 * epoch takes the first round(fraction × n) examples of its shuffle (none when that is 0).
 */
export function planEpochs(exampleCount: number, opts: EpochPlanOptions): number[][] {
  requireCount(exampleCount, 'exampleCount');
  if (!Number.isFinite(opts.epochs) || opts.epochs <= 0) {
    throw new RangeError(`epochs must be a number > 0 (got ${opts.epochs})`);
  }
  const whole = Math.floor(opts.epochs);
  const partial = Math.round((opts.epochs - whole) * exampleCount);
  const epochs: number[][] = [];
  const seed = mixSeed(opts.seed >>> 0, SHUFFLE_SALT);
  for (let e = 0; e < whole; e++) epochs.push(permutation(exampleCount, mixSeed(seed, e)));
  if (partial > 0) {
    epochs.push(permutation(exampleCount, mixSeed(seed, whole)).slice(0, partial));
  }
  return epochs;
}

/** Something with a token length: a number, a Datum, an SftExample, or a DPO pair. */
export type Sized =
  | number
  | { tokens: ArrayLike<number> }
  | { datum: { tokens: ArrayLike<number> } }
  | { chosen: { tokens: ArrayLike<number> }; rejected: { tokens: ArrayLike<number> } }
  | { promptTokens: ArrayLike<number> };

/** Tokens an item puts into a step (a DPO pair counts both sides). */
export function sequenceLength(item: Sized): number {
  if (typeof item === 'number') return item;
  if ('datum' in item) return item.datum.tokens.length;
  if ('chosen' in item) return item.chosen.tokens.length + item.rejected.tokens.length;
  if ('promptTokens' in item) return item.promptTokens.length;
  return item.tokens.length;
}

export interface Batch {
  /** Indices into the items, in order. */
  indices: number[];
  /** Their tokens in total. */
  tokens: number;
}

/**
 * Packs whole sequences, in the given order, into steps of at most batchTokens tokens: the
 * next sequence joins the current step if it fits, else starts a new one; a sequence longer
 * than the budget is a step of its own. Greedy in order (no reordering to fill gaps), so a
 * step's content depends only on the order and the lengths.
 */
export function packBatches(
  items: readonly Sized[],
  order: readonly number[],
  opts: { batchTokens: number },
): Batch[] {
  if (!Number.isInteger(opts.batchTokens) || opts.batchTokens < 1) {
    throw new RangeError(`batchTokens must be a whole number >= 1 (got ${opts.batchTokens})`);
  }
  const batches: Batch[] = [];
  let current: Batch | undefined;
  for (const index of order) {
    const item = items[index];
    if (item === undefined) {
      throw new RangeError(`order names item ${index}, but there are ${items.length} items`);
    }
    const length = sequenceLength(item);
    if (current && current.tokens + length <= opts.batchTokens) {
      current.indices.push(index);
      current.tokens += length;
      continue;
    }
    current = { indices: [index], tokens: length };
    batches.push(current);
  }
  return batches;
}

export interface PlannedStep extends Batch {
  /** 0-based step number over the whole job. */
  step: number;
  /** 0-based epoch the step belongs to (steps never span two epochs). */
  epoch: number;
}

export interface TrainingPlan {
  /** The example order of each epoch (planEpochs). */
  epochs: number[][];
  steps: PlannedStep[];
}

/** Epoch orders packed into steps, each epoch packed on its own so epochs end on a step. */
export function planSteps(
  items: readonly Sized[],
  opts: EpochPlanOptions & { batchTokens: number },
): TrainingPlan {
  const epochs = planEpochs(items.length, opts);
  const steps: PlannedStep[] = [];
  epochs.forEach((order, epoch) => {
    for (const batch of packBatches(items, order, opts)) {
      steps.push({ ...batch, step: steps.length, epoch });
    }
  });
  return { epochs, steps };
}

export interface EvalSplitOptions {
  seed: number;
  /** Share of the examples held out (chosen default 0.1). */
  fraction?: number;
  /** Most examples held out (chosen default 200): evaluation stays cheap on big datasets. */
  maxEval?: number;
  /** Below this many examples nothing is held out (chosen default 10). */
  minExamples?: number;
}

export interface EvalSplit {
  /** Example indices for training, ascending. */
  train: number[];
  /** Held-out example indices, ascending. */
  eval: number[];
}

/**
 * The evaluation set carved out of the training set when a job names no evaluation dataset
 * (the source says a portion is carved out but not how much; chosen: min(floor(10%), 200)
 * examples, at least 1, and none for datasets under 10 examples, whose every example is
 * needed for training). Split by source row, so unrolled records of one conversation never
 * land on both sides.
 */
export function carveEvalSplit(exampleCount: number, opts: EvalSplitOptions): EvalSplit {
  requireCount(exampleCount, 'exampleCount');
  const fraction = opts.fraction ?? 0.1;
  if (!(fraction >= 0 && fraction < 1)) {
    throw new RangeError(`fraction must be in [0, 1) (got ${fraction})`);
  }
  const all = Array.from({ length: exampleCount }, (_, i) => i);
  if (exampleCount < (opts.minExamples ?? 10) || fraction === 0) return { train: all, eval: [] };
  const count = Math.min(opts.maxEval ?? 200, Math.max(1, Math.floor(exampleCount * fraction)));
  const held = new Set(
    permutation(exampleCount, mixSeed(opts.seed >>> 0, EVAL_SALT)).slice(0, count),
  );
  return {
    train: all.filter((i) => !held.has(i)),
    eval: all.filter((i) => held.has(i)),
  };
}

/**
 * The supervised methods' (SFT, DPO, ORPO) training data packed by tokens, step by step: what
 * managed jobs train on and what the sft/dpo/orpo recipes train on when their config gives
 * `batch_tokens`. Deterministic by construction: the same settings always yield the same
 * batches for the same step, which is what lets a relaunched trainer resume from a checkpoint
 * and reproduce an uninterrupted run bitwise. Validation, rendering and packing are
 * src/datasets'; this module only arranges the result per step.
 */
import {
  carveEvalSplit,
  dpoPairs,
  parseDataset,
  planSteps,
  type Sized,
  sftDatums,
} from '../../datasets/index.js';
import type { TrainingDatum } from '../../sdk/types.js';
import { toTrainingDatum } from '../../sdk/types.js';
import type { Renderer } from '../../tokenizers/index.js';

/** One optimizer step: its micro-batches (gradient accumulation), each a list of datums. */
export type StepBatches = TrainingDatum[][];

export interface SupervisedData {
  /** Single sequences (SFT) or [chosen, rejected] pairs (DPO, ORPO), in dataset order. */
  units: TrainingDatum[][];
  /** The same datum objects, arranged per optimizer step. */
  steps: StepBatches[];
  /** Held-out datums (SFT sequences; [chosen, rejected] pairs): evaluated at segment ends. */
  eval: TrainingDatum[];
}

/** What the data depends on (managed jobs' TrainingPlan has every field). */
export interface PackedDataSettings {
  method: 'sft' | 'dpo' | 'orpo' | 'rft';
  maxContextLength: number;
  epochs: number;
  seed: number;
  /** Token budget of one micro-batch (sequences are packed whole). */
  batchTokens: number;
  gradientAccumulationSteps: number;
  /** Without an evaluation dataset, hold out a seeded split of the training rows (default). */
  carveEvalSplit?: boolean;
}

interface Rendered {
  /** One datum (SFT) or a [chosen, rejected] pair (DPO) per unit. */
  units: TrainingDatum[][];
  sizes: Sized[];
  /** The source row of each unit (unrolled conversations give several units per row). */
  rowOf: number[];
  rowCount: number;
}

/** Validated, rendered units and their sizes for packing. */
function renderUnits(plan: PackedDataSettings, text: string, renderer: Renderer): Rendered {
  const opts = { maxContextLength: plan.maxContextLength };
  if (plan.method === 'sft') {
    const rows = parseDataset('sft', text).rows;
    const examples = sftDatums(rows, renderer, opts);
    return {
      units: examples.map((e) => [toTrainingDatum(e.datum)]),
      sizes: examples as Sized[],
      rowOf: examples.map((e) => e.rowIndex),
      rowCount: rows.length,
    };
  }
  const rows = parseDataset('dpo', text).rows;
  const pairs = dpoPairs(rows, renderer, opts);
  return {
    units: pairs.map((p) => [toTrainingDatum(p.chosen), toTrainingDatum(p.rejected)]),
    sizes: pairs as Sized[],
    rowOf: pairs.map((p) => p.rowIndex),
    rowCount: rows.length,
  };
}

/**
 * The held-out set: the evaluation dataset when there is one, else rows carved out of the
 * training set (src/datasets carveEvalSplit, seeded; none under 10 rows).
 */
function splitEval(train: Rendered, evalSet: Rendered | null, seed: number, carve: boolean) {
  const all = train.units.map((_, i) => i);
  if (evalSet) return { keep: all, evalUnits: evalSet.units };
  if (!carve) return { keep: all, evalUnits: [] };
  const held = new Set(carveEvalSplit(train.rowCount, { seed }).eval);
  return {
    keep: all.filter((i) => !held.has(train.rowOf[i]!)),
    evalUnits: all.filter((i) => held.has(train.rowOf[i]!)).map((i) => train.units[i]!),
  };
}

/**
 * Units packed into micro-batches of `batchTokens` (per epoch, seeded order), then
 * `gradientAccumulationSteps` consecutive micro-batches per optimizer step. The held-out set is
 * `evalText`'s rows, else a split carved out of `text` (unless `carveEvalSplit` is false). Throws the dataset's
 * DatasetValidationError (with its line number) on bad data.
 */
export function buildSupervisedData(
  plan: PackedDataSettings,
  text: string,
  renderer: Renderer,
  evalText: string | null = null,
): SupervisedData {
  const train = renderUnits(plan, text, renderer);
  const evalSet = evalText === null ? null : renderUnits(plan, evalText, renderer);
  const { keep, evalUnits } = splitEval(train, evalSet, plan.seed, plan.carveEvalSplit ?? true);
  const units = keep.map((i) => train.units[i]!);
  const planned = planSteps(
    keep.map((i) => train.sizes[i]!),
    { epochs: plan.epochs, seed: plan.seed, batchTokens: plan.batchTokens },
  );
  const micro = planned.steps.map((s) => s.indices.flatMap((i) => units[i]!));
  const steps: StepBatches[] = [];
  const k = plan.gradientAccumulationSteps;
  for (let i = 0; i < micro.length; i += k) steps.push(micro.slice(i, i + k));
  return { units, steps, eval: evalUnits.flat() };
}

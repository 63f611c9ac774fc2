/** Datasets: JSONL reading, managed-job dataset validation, rendering to datums, data order. */

export {
  type Batch,
  carveEvalSplit,
  type EpochPlanOptions,
  type EvalSplit,
  type EvalSplitOptions,
  type PlannedStep,
  packBatches,
  planEpochs,
  planSteps,
  type Sized,
  sequenceLength,
  type TrainingPlan,
} from './batching.js';
export { type DpoPair, type DpoRenderOptions, dpoPairs, flattenPairs } from './dpo-datums.js';
export type { DpoRow } from './dpo-schema.js';
export {
  DATASET_ERROR_PREFIX,
  type DatasetIssue,
  type DatasetValidationCode,
  DatasetValidationError,
  issueMessage,
} from './errors.js';
export { DatasetError, parseJsonl, readJsonl } from './jsonl.js';
export { decodeDatasetBytes, type JsonlLine, jsonlLines } from './lines.js';
export { type MessageRules, ROLES } from './message-schema.js';
export { type RftPrompt, type RftPromptOptions, rftPrompts } from './rft-prompts.js';
export type { RftRow, RftRules } from './rft-schema.js';
export {
  RENDER_SAMPLE_LIMIT,
  type RenderSample,
  renderSamples,
  renderSftRow,
  type SftExample,
  type SftRecord,
  type SftRenderOptions,
  sftDatums,
  type TrainOnWhat,
  unrollSftMessages,
} from './sft-datums.js';
export { needsThinkingUnroll, type SftRow, sftExampleCount } from './sft-schema.js';
export {
  DATASET_LIMITS,
  type DatasetKind,
  type DatasetSummary,
  type ParsedDataset,
  parseDataset,
  type RowsByKind,
  readDataset,
  type ValidateOptions,
  validateDataset,
} from './validate.js';

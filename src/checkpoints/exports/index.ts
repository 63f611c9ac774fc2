// Sampler exports: HF model directories (base or merged LoRA) and PEFT adapters, written to an
// object store prefix (committed by temper_export.json) or a local directory.
export {
  asSource,
  directorySource,
  EXPORT_MANIFEST,
  type ExportFile,
  type ExportKind,
  type ExportManifest,
  type ExportSource,
  type ExportTarget,
  exportManifestSchema,
  readExportManifest,
  storeSource,
  verifyExport,
  writeExport,
  writeExportDirectory,
} from './files.js';
export {
  type ExportCommitOptions,
  exportHfModel,
  type HfExportOptions,
  hfModelFiles,
  modelWeights,
  TOKENIZER_FILES,
  tensorMapWeights,
  type WeightsSpec,
} from './hf.js';
export { exportMergedModel, mergedWeights, mergeLinear } from './merged.js';
export {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  type AdapterConfig,
  adapterConfigOf,
  adapterConfigSchema,
  exportPeftAdapter,
  fromPeftName,
  loadAdapter,
  openAdapterModel,
  PEFT_PREFIX,
  type PeftAdapter,
  type PeftExportOptions,
  peftAdapterFiles,
  readPeftAdapter,
  toPeftName,
} from './peft.js';

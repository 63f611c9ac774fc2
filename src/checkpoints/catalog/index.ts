// The checkpoint catalog (rows derived from the object store) and checkpoint-type detection.
export {
  type CatalogEntry,
  CheckpointCatalog,
  type CheckpointCatalogOptions,
  type CheckpointName,
  type CheckpointRow,
  checkpointPrefix,
  checkpointsPrefix,
  formatCheckpointName,
  type ListCheckpointsOptions,
  type ListCheckpointsResult,
  MAX_PAGE_SIZE,
  parseCheckpointName,
  RESOURCE_ID,
  toRow,
  validateResourceId,
} from './catalog.js';
export {
  CHECKPOINT_TYPES,
  type CheckpointObject,
  type CheckpointType,
  type DetectedCheckpoint,
  detectCheckpoint,
  EXPORT_MANIFEST,
  type ExportManifestFields,
  exportManifestFields,
} from './detect.js';

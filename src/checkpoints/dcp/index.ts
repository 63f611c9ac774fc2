// DCP train-state checkpoints: per-rank shard files + a metadata file committed last.
export {
  DcpCheckpoints,
  type DcpCheckpointsOptions,
  type DcpLoaded,
  type DcpLoadOptions,
  type DcpSaveInput,
  type DcpShardResult,
  type DcpSlice,
  type RangeOf,
  type SaveTensor,
  type SweepOptions,
  type SweepResult,
  type WholeTensor,
} from './checkpoints.js';
export {
  type ChecksumAlgorithm,
  DEFAULT_CHECKSUM,
  newChecksum,
} from './checksum.js';
export {
  CheckpointError,
  type CheckpointErrorCode,
  validateCheckpointName,
  validatePrefix,
} from './errors.js';
export {
  DCP_FORMAT,
  type DcpMetadata,
  dcpMetadataSchema,
  type JsonValue,
  METADATA_FILE,
  parseDcpMetadata,
} from './metadata.js';
export { type FlatRange, intersectRanges, partitionRange } from './partition.js';
export {
  captureTrainState,
  commitTrainState,
  expAvgKey,
  expAvgSqKey,
  type LoadedTrainState,
  loadTrainState,
  type MomentShard,
  saveTrainState,
  type TrainStateExtra,
  trainStateTensors,
  weightKey,
  writeTrainStateShard,
} from './train-state.js';

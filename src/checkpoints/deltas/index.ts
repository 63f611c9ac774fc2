// arc_v2 deltas: per-tensor XOR + zstd with Adler-32 checksums (arc-v2.ts), and incremental
// snapshots made of delta files plus a committed manifest (snapshot.ts).
export { adler32, alder32String, xorAdler32, xorAdler32Portable } from './adler32.js';
export {
  type ApplyFileOptions,
  applyDeltaFile,
  applyDeltaFileAsync,
  applyDeltaFileToPath,
  applyTensorDelta,
  CHECKSUM_FORMAT,
  COMPRESSION_FORMAT,
  type DeltaFile,
  type DeltaFromTensors,
  type EncodeFileOptions,
  encodeDeltaFile,
  encodeDeltaFileAsync,
  encodeDeltaFileFromPaths,
  encodeDeltaFileFromTensors,
  encodeTensorDelta,
  type TensorDelta,
  xorBytes,
} from './arc-v2.js';
export {
  parseRawSafetensors,
  type RawSafetensors,
  type RawTensorEntry,
  serializeU8Safetensors,
} from './raw-safetensors.js';
export {
  type ApplyDeltaSnapshotOptions,
  applyDeltaSnapshot,
  DELTA_FORMAT,
  DELTA_MANIFEST,
  type DeltaManifest,
  deltaManifestSchema,
  dirSnapshot,
  incrementalSnapshotMetadata,
  type MemorySnapshotFile,
  memorySnapshot,
  parseDeltaManifest,
  readDeltaManifest,
  type SnapshotReader,
  type SnapshotTarget,
  storeSnapshot,
  type WriteDeltaSnapshotOptions,
  writeDeltaSnapshot,
} from './snapshot.js';
export {
  DEFAULT_ZSTD_LEVEL,
  zstdCompress,
  zstdCompressAsync,
  zstdDecompress,
  zstdDecompressAsync,
} from './zstd.js';

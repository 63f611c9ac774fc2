// The metadata file of a DCP checkpoint (`{name}/metadata.json`), written last with an
// if-absent put: it is the commit point, and it describes every file and every tensor chunk.
//
// {
//   "format": "temper-dcp", "version": 1,
//   "name": "step-000100", "checkpointType": "TRAINING" | "TRAINING_LORA" | ...,
//   "createTime": RFC3339, "expireTime": RFC3339 | null,
//   "step": 100, "worldSize": 2, "partition": "contiguous-flat",
//   "files": [{"path": "data-1a2b3c4d5e6f/rank-00000-of-00002.safetensors",
//              "rank": 0, "size": 1234, "checksum": "crc32:1a2b3c4d"}],  // or "sha256:…"
//   "tensors": {"weights/model.norm.weight": {"shape": [256], "dtype": "F32",
//       "chunks": [{"file": "data-…/rank-00000-of-00002.safetensors", "rank": 0,
//                   "byteRange": [begin, end], "flatRange": [start, end]}]}},
//   "state": {...}   // caller's JSON: data cursor, RNG state, hyperparameters, model config
// }
//
// byteRange is an absolute range of the file (little-endian float32); flatRange is the range
// of the tensor's row-major flat index it holds. Shard files are themselves safetensors files
// (1-D float32 tensors named by the tensor key), so any safetensors tool can inspect them.
import { z } from 'zod';
import { CHECKSUM_PATTERN } from './checksum.js';
import { CheckpointError } from './errors.js';

export const DCP_FORMAT = 'temper-dcp';
export const DCP_VERSION = 1;
export const METADATA_FILE = 'metadata.json';
/** Shard files live under `data-{attempt}/`: each save attempt writes fresh keys. */
export const SHARD_PATH = /^data-[a-z0-9]{4,32}\/rank-\d{5}-of-\d{5}\.safetensors$/;

const int = z.number().int().nonnegative();
const range = z.tuple([int, int]);

export const chunkSchema = z.object({
  file: z.string().regex(SHARD_PATH),
  rank: int,
  byteRange: range,
  flatRange: range,
});

export const tensorEntrySchema = z.object({
  shape: z.array(int),
  dtype: z.literal('F32'),
  chunks: z.array(chunkSchema),
});

export const fileEntrySchema = z.object({
  path: z.string().regex(SHARD_PATH),
  rank: int,
  size: int,
  /** "crc32:<8 hex>" (default) or "sha256:<64 hex>" of the whole file. */
  checksum: z.string().regex(CHECKSUM_PATTERN),
});

export const dcpMetadataSchema = z.object({
  format: z.literal(DCP_FORMAT),
  version: z.literal(DCP_VERSION),
  name: z.string(),
  checkpointType: z.string(),
  createTime: z.iso.datetime(),
  expireTime: z.iso.datetime().nullable(),
  step: int,
  worldSize: z.number().int().positive(),
  partition: z.literal('contiguous-flat'),
  files: z.array(fileEntrySchema),
  tensors: z.record(z.string(), tensorEntrySchema),
  state: z.json(),
});

export type DcpMetadata = z.infer<typeof dcpMetadataSchema>;
export type DcpFileEntry = z.infer<typeof fileEntrySchema>;
export type DcpChunk = z.infer<typeof chunkSchema>;
export type DcpTensorEntry = z.infer<typeof tensorEntrySchema>;
export type JsonValue = z.infer<ReturnType<typeof z.json>>;

/** Parses and cross-checks a metadata file: chunks tile each tensor and point at listed files. */
export function parseDcpMetadata(text: string, source: string): DcpMetadata {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(
      'corrupt',
      `${source} is not valid JSON (${(err as Error).message})`,
      {
        file: METADATA_FILE,
      },
    );
  }
  const parsed = dcpMetadataSchema.safeParse(raw);
  if (!parsed.success)
    throw new CheckpointError(
      'corrupt',
      `${source} is malformed: ${parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
        .join('; ')}`,
      { file: METADATA_FILE },
    );
  const meta = parsed.data;
  const files = new Map(meta.files.map((f) => [f.path, f]));
  for (const [key, t] of Object.entries(meta.tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const chunks = [...t.chunks].sort((a, b) => a.flatRange[0] - b.flatRange[0]);
    let at = 0;
    for (const c of chunks) {
      const f = files.get(c.file);
      const [s, e] = c.flatRange;
      const [b, end] = c.byteRange;
      if (!f || s !== at || e <= s || end - b !== (e - s) * 4 || end > f.size)
        throw new CheckpointError(
          'corrupt',
          `${source}: the chunks of tensor '${key}' do not tile its ${n} elements (chunk ${c.file} [${s}, ${e}))`,
          { file: METADATA_FILE },
        );
      at = e;
    }
    if (at !== n)
      throw new CheckpointError(
        'corrupt',
        `${source}: the chunks of tensor '${key}' cover ${at} of its ${n} elements`,
        { file: METADATA_FILE },
      );
  }
  return meta;
}

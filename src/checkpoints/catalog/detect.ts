// What kind of checkpoint a set of blobs is, decided from the blobs themselves (never from a
// caller's claim). A checkpoint is the objects under one checkpoint prefix; it counts only
// once a commit file is there, that file parses, every file it lists is present with the
// listed size, and it has not expired:
//
// | commit file                           | written by          | files that decide the type                   | type               |
// | ------------------------------------- | ------------------- | -------------------------------------------- | ------------------ |
// | metadata.json (format temper-dcp)     | ../dcp              | a tensor key with '.lora_' → LoRA            | TRAINING(_LORA)    |
// | temper_export.json (temper-export)    | ../exports          | adapter_config.json + adapter_model.safetensors | INFERENCE_LORA  |
// |                                       |                     | config.json + model*.safetensors             | INFERENCE_BASE     |
// | incremental_snapshot_metadata.json    | ../deltas           | compression_format arc_v2                    | INFERENCE_ARC_V2   |
//
// A checkpoint saved both resumable and promotable (same name) holds a DCP commit and a
// sampler export: its type is the sampler's (what promotion uses), `resumable` says the
// other. INFERENCE_BASE and INFERENCE_LORA are promotable; an arc_v2 delta is not.
import { z } from 'zod';
import { METADATA_FILE, parseDcpMetadata } from '../dcp/metadata.js';
import { DELTA_MANIFEST, parseDeltaManifest } from '../deltas/snapshot.js';

export const CHECKPOINT_TYPES = [
  'TRAINING',
  'TRAINING_LORA',
  'INFERENCE_BASE',
  'INFERENCE_LORA',
  'INFERENCE_ARC_V2',
] as const;
export type CheckpointType = (typeof CHECKPOINT_TYPES)[number];

/** The sampler export's commit file (../exports/files.ts). */
export const EXPORT_MANIFEST = 'temper_export.json';
export const PEFT_CONFIG = 'adapter_config.json';
export const PEFT_WEIGHTS = 'adapter_model.safetensors';
export const HF_CONFIG = 'config.json';
const HF_WEIGHTS = /^model[A-Za-z0-9._-]*\.safetensors$/;

/** The fields of the export manifest we rely on (the exporter owns the full schema). */
export const exportManifestFields = z.object({
  format: z.literal('temper-export'),
  createTime: z.iso.datetime(),
  expireTime: z.iso.datetime().nullable(),
  baseModel: z.string().nullable().optional(),
  files: z.array(
    z.object({
      path: z.string(),
      size: z.number().int().nonnegative(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  ),
});
export type ExportManifestFields = z.infer<typeof exportManifestFields>;

/** One object of a checkpoint, keyed relative to the checkpoint's prefix. */
export interface CheckpointObject {
  path: string;
  size: number;
  updated: Date;
}

export interface DetectedCheckpoint {
  checkpointType: CheckpointType;
  promotable: boolean;
  resumable: boolean;
  createTime: Date;
  updateTime: Date;
  /** The earliest expiry among the commits that count, or null. */
  expireTime: Date | null;
  /** The committed sampler export (INFERENCE_BASE / INFERENCE_LORA), for promotion. */
  export: ExportManifestFields | null;
}

type Reader = (path: string) => Promise<Buffer>;

interface Commit {
  type: CheckpointType;
  createTime: Date;
  expireTime: Date | null;
  export?: ExportManifestFields;
}

function filesPresent(
  listed: readonly { path: string; size: number }[],
  objects: Map<string, CheckpointObject>,
): boolean {
  return listed.every((f) => objects.get(f.path)?.size === f.size);
}

function live(expireTime: string | null, now: Date): boolean {
  return expireTime === null || Date.parse(expireTime) > now.getTime();
}

async function readJson(read: Reader, path: string): Promise<unknown> {
  return JSON.parse((await read(path)).toString('utf8'));
}

async function dcpCommit(
  objects: Map<string, CheckpointObject>,
  read: Reader,
  now: Date,
): Promise<Commit | null> {
  if (!objects.has(METADATA_FILE)) return null;
  const meta = parseDcpMetadata((await read(METADATA_FILE)).toString('utf8'), METADATA_FILE);
  if (!live(meta.expireTime, now) || !filesPresent(meta.files, objects)) return null;
  const lora = Object.keys(meta.tensors).some((k) => k.includes('.lora_'));
  return {
    type: lora ? 'TRAINING_LORA' : 'TRAINING',
    createTime: new Date(meta.createTime),
    expireTime: meta.expireTime ? new Date(meta.expireTime) : null,
  };
}

async function exportCommit(
  objects: Map<string, CheckpointObject>,
  read: Reader,
  now: Date,
): Promise<Commit | null> {
  if (!objects.has(EXPORT_MANIFEST)) return null;
  const parsed = exportManifestFields.safeParse(await readJson(read, EXPORT_MANIFEST));
  if (!parsed.success) return null;
  const m = parsed.data;
  if (!live(m.expireTime, now) || !filesPresent(m.files, objects)) return null;
  const names = new Set(m.files.map((f) => f.path));
  let type: CheckpointType;
  if (names.has(PEFT_CONFIG) && names.has(PEFT_WEIGHTS)) type = 'INFERENCE_LORA';
  else if (names.has(HF_CONFIG) && [...names].some((n) => HF_WEIGHTS.test(n)))
    type = 'INFERENCE_BASE';
  else return null;
  return {
    type,
    createTime: new Date(m.createTime),
    expireTime: m.expireTime ? new Date(m.expireTime) : null,
    export: m,
  };
}

async function deltaCommit(
  objects: Map<string, CheckpointObject>,
  read: Reader,
  now: Date,
): Promise<Commit | null> {
  if (!objects.has(DELTA_MANIFEST)) return null;
  const m = parseDeltaManifest((await read(DELTA_MANIFEST)).toString('utf8'), DELTA_MANIFEST);
  if (!live(m.expireTime, now) || !filesPresent(m.files, objects)) return null;
  return {
    type: 'INFERENCE_ARC_V2',
    createTime: new Date(m.createTime),
    expireTime: m.expireTime ? new Date(m.expireTime) : null,
  };
}

/** A malformed or unreadable commit file counts as no commit (the checkpoint is not listed). */
async function tolerant(p: Promise<Commit | null>): Promise<Commit | null> {
  try {
    return await p;
  } catch {
    return null;
  }
}

/**
 * Detects the checkpoint the objects form; null when nothing committed, complete and
 * unexpired is there. `read` fetches an object by its path relative to the checkpoint.
 */
export async function detectCheckpoint(
  objects: readonly CheckpointObject[],
  read: Reader,
  now: Date = new Date(),
): Promise<DetectedCheckpoint | null> {
  const byPath = new Map(objects.map((o) => [o.path, o]));
  const [dcp, exp, delta] = await Promise.all([
    tolerant(dcpCommit(byPath, read, now)),
    tolerant(exportCommit(byPath, read, now)),
    tolerant(deltaCommit(byPath, read, now)),
  ]);
  const sampler = exp ?? delta;
  const main = sampler ?? dcp;
  if (!main) return null;
  const commits = [dcp, sampler].filter((c): c is Commit => c !== null);
  const expiries = commits.map((c) => c.expireTime).filter((d): d is Date => d !== null);
  return {
    checkpointType: main.type,
    promotable: main.type === 'INFERENCE_BASE' || main.type === 'INFERENCE_LORA',
    resumable: dcp !== null,
    createTime: new Date(Math.min(...commits.map((c) => c.createTime.getTime()))),
    updateTime: new Date(Math.max(...objects.map((o) => o.updated.getTime()))),
    expireTime: expiries.length ? new Date(Math.min(...expiries.map((d) => d.getTime()))) : null,
    export: main.export ?? null,
  };
}

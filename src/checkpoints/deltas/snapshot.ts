// Incremental snapshots: a directory (or object-store prefix) in HuggingFace layout where
// every weights file `*.safetensors` is an arc_v2 delta file (arc-v2.ts) against the file of
// the same name in the previous snapshot, and every other file (config.json, tokenizer
// files, ...) is copied from the new snapshot as is.
//
// `incremental_snapshot_metadata.json` is written last (if-absent in object stores; a whole
// directory renamed into place locally): it is the commit point, and what the catalog
// detects an INFERENCE_ARC_V2 checkpoint by. Its first three fields are exactly the hot-load
// signal's `incremental_snapshot_metadata`:
//   {"previous_snapshot_identity": "step-0001-a1b2c3d4", "compression_format": "arc_v2",
//    "checksum_format": "alder32", "format": "temper-arc-v2-snapshot", "version": 1,
//    "createTime": RFC3339, "expireTime": RFC3339 | null,
//    "files": [{"path": "model-00000.safetensors", "delta": true, "size": 1234,
//               "sha256": "…", "fullSize": 56789, "fullSha256": "…"}, ...]}
// size/sha256 are those of the stored file; fullSize/fullSha256 those of the file the
// snapshot stands for, which applying the delta must reproduce exactly. The reference's
// tools ignore the manifest and read the delta files directly.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { fileDigest } from '../../util/file-digest.js';
import { CheckpointError, validateCheckpointName, validatePrefix } from '../dcp/errors.js';
import type { ExportBody } from '../exports/files.js';
import { type ObjectStore, ObjectStoreError } from '../object-store/types.js';
import type { TensorFileSource } from '../safetensors.js';
import {
  applyDeltaFileAsync,
  applyDeltaFileToPath,
  CHECKSUM_FORMAT,
  COMPRESSION_FORMAT,
  encodeDeltaFileAsync,
  encodeDeltaFileFromPaths,
  encodeDeltaFileFromTensors,
} from './arc-v2.js';

export const DELTA_MANIFEST = 'incremental_snapshot_metadata.json';
export const DELTA_FORMAT = 'temper-arc-v2-snapshot';
/** Commit files of other kinds of export; never part of a delta snapshot. */
const FOREIGN_MANIFESTS = new Set(['temper_export.json', 'metadata.json']);

export const deltaManifestSchema = z.object({
  previous_snapshot_identity: z.string(),
  compression_format: z.literal(COMPRESSION_FORMAT),
  checksum_format: z.literal(CHECKSUM_FORMAT),
  format: z.literal(DELTA_FORMAT),
  version: z.literal(1),
  createTime: z.iso.datetime(),
  expireTime: z.iso.datetime().nullable(),
  files: z.array(
    z.object({
      path: z.string(),
      delta: z.boolean(),
      size: z.number().int().nonnegative(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      fullSize: z.number().int().nonnegative(),
      fullSha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  ),
});
export type DeltaManifest = z.infer<typeof deltaManifestSchema>;

/** The hot-load signal's `incremental_snapshot_metadata` for a delta snapshot. */
export function incrementalSnapshotMetadata(m: DeltaManifest): {
  previous_snapshot_identity: string;
  compression_format: 'arc_v2';
  checksum_format: 'alder32';
} {
  return {
    previous_snapshot_identity: m.previous_snapshot_identity,
    compression_format: m.compression_format,
    checksum_format: m.checksum_format,
  };
}

const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;

function checkFileName(path: string, where: string): string {
  if (!FILE_NAME.test(path) || path.includes('..'))
    throw new CheckpointError(
      'invalid_name',
      `${where}: file name '${path}' must be a plain file name (no '/' or '..')`,
      {
        file: path,
      },
    );
  return path;
}

// ---------------------------------------------------------------------------------------
// Where snapshots are read from and written to
// ---------------------------------------------------------------------------------------

/** Read access to one snapshot: a local directory or an object-store prefix (flat). */
export interface SnapshotReader {
  readonly where: string;
  /** Plain file names directly in the snapshot, sorted. */
  list(): Promise<string[]>;
  read(path: string): Promise<Buffer>;
  /** The file's local path when the snapshot is a directory (big files are then streamed). */
  localPath?(path: string): string;
  /**
   * A weights file given tensor by tensor (a snapshot of weights in memory, never written):
   * a delta is then encoded straight from its tensors. Undefined or null: read it whole.
   */
  tensors?(path: string): TensorFileSource | null;
}

/** A file of a snapshot held in memory: its body, and a weights file's tensors. */
export interface MemorySnapshotFile {
  path: string;
  body: () => ExportBody | Promise<ExportBody>;
  tensors?: TensorFileSource;
}

/**
 * A snapshot that exists only as files produced on demand (an export's files, e.g.
 * `hfModelFiles` of a model's weights in the engine): a delta against it is encoded with no
 * full copy written to disk first. `where` names it in messages.
 */
export function memorySnapshot(
  where: string,
  files: readonly MemorySnapshotFile[],
): SnapshotReader {
  const byPath = new Map(files.map((f) => [checkFileName(f.path, where), f]));
  return {
    where,
    async list() {
      return [...byPath.keys()].filter((p) => !p.startsWith('.')).sort();
    },
    async read(path) {
      const f = byPath.get(path);
      if (!f)
        throw new CheckpointError('not_found', `${where}/${path} does not exist`, { file: path });
      return bodyBytes(await f.body());
    },
    tensors: (path) => byPath.get(path)?.tensors ?? null,
  };
}

async function bodyBytes(body: ExportBody): Promise<Buffer> {
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (Buffer.isBuffer(body)) return body;
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks);
}

export function dirSnapshot(dir: string): SnapshotReader {
  return {
    where: dir,
    localPath: (path) => join(dir, checkFileName(path, dir)),
    async list() {
      const entries = await readdir(dir, { withFileTypes: true });
      return entries
        .filter((e) => e.isFile() && !e.name.startsWith('.'))
        .map((e) => e.name)
        .sort();
    },
    async read(path) {
      try {
        return await readFile(join(dir, checkFileName(path, dir)));
      } catch (err) {
        if (err instanceof CheckpointError) throw err;
        throw new CheckpointError(
          'not_found',
          `${join(dir, path)}: cannot read (${(err as Error).message})`,
          {
            file: path,
            cause: err,
          },
        );
      }
    },
  };
}

export function storeSnapshot(store: ObjectStore, prefix: string): SnapshotReader {
  const pre = validatePrefix(prefix);
  const where = `${store.url}/${pre}`;
  const key = (p: string) => (pre ? `${pre}/${checkFileName(p, where)}` : checkFileName(p, where));
  return {
    where,
    async list() {
      const start = pre ? `${pre}/` : '';
      return (await store.list(start))
        .map((o) => o.key.slice(start.length))
        .filter((k) => !k.includes('/') && !k.startsWith('.'))
        .sort();
    },
    async read(path) {
      try {
        return await store.get(key(path));
      } catch (err) {
        if (err instanceof ObjectStoreError && err.code === 'not_found')
          throw new CheckpointError('not_found', `${where}/${path} does not exist`, {
            file: path,
            cause: err,
          });
        throw err;
      }
    },
  };
}

export type SnapshotTarget = { store: ObjectStore; prefix: string } | { dir: string };

/** Writes files to a target; `commit` makes them visible (manifest put / directory rename). */
interface TargetWriter {
  where: string;
  write(path: string, body: Buffer): Promise<void>;
  /** Directory targets: where a file is to be written before commit. */
  localPath?(path: string): string;
  commit(manifest: Buffer | null): Promise<void>;
  abort(): Promise<void>;
}

async function openTarget(target: SnapshotTarget): Promise<TargetWriter> {
  if ('dir' in target) {
    const dir = target.dir;
    const tmp = join(
      dirname(dir),
      `.${basename(dir)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    );
    await mkdir(tmp, { recursive: true });
    return {
      where: dir,
      async write(path, body) {
        await writeFile(join(tmp, path), body);
      },
      localPath: (path) => join(tmp, path),
      async commit(manifest) {
        if (manifest) await writeFile(join(tmp, DELTA_MANIFEST), manifest);
        const existing = await stat(dir).catch(() => null);
        if (existing) await rm(dir, { recursive: true, force: true });
        await rename(tmp, dir);
      },
      async abort() {
        await rm(tmp, { recursive: true, force: true });
      },
    };
  }
  const { store } = target;
  const pre = validatePrefix(target.prefix);
  const key = (p: string) => (pre ? `${pre}/${p}` : p);
  const where = `${store.url}/${pre}`;
  if (await store.stat(key(DELTA_MANIFEST)))
    throw new CheckpointError('already_exists', `a snapshot is already committed at ${where}`);
  const written: string[] = [];
  return {
    where,
    async write(path, body) {
      written.push(path);
      await store.put(key(path), body);
    },
    async commit(manifest) {
      if (!manifest) return;
      try {
        await store.put(key(DELTA_MANIFEST), manifest, {
          ifAbsent: true,
          contentType: 'application/json',
        });
      } catch (err) {
        if (err instanceof ObjectStoreError && err.code === 'already_exists')
          throw new CheckpointError(
            'already_exists',
            `another snapshot was committed at ${where} first`,
          );
        throw err;
      }
    },
    async abort() {
      // Nothing we wrote is visible without the manifest; remove it all the same.
      await Promise.all(written.map((p) => store.delete(key(p)).catch(() => undefined)));
    },
  };
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------
// Writing and applying
// ---------------------------------------------------------------------------------------

export interface WriteDeltaSnapshotOptions {
  /** The snapshot the deployment already holds. */
  previous: SnapshotReader;
  /** The new full snapshot (an HF-layout export: a directory, or files in memory). */
  next: SnapshotReader;
  /** The previous snapshot's identity (one path segment). */
  previousSnapshotIdentity: string;
  target: SnapshotTarget;
  /** zstd level (default 3). */
  level?: number;
  ttlSeconds?: number;
  now?: () => Date;
}

/**
 * Writes the arc_v2 incremental snapshot of `next` against `previous`. Throws
 * CheckpointError 'incompatible' (and leaves nothing visible) when a weights file has no
 * counterpart with the same tensors: the caller then writes a full snapshot.
 */
export async function writeDeltaSnapshot(opts: WriteDeltaSnapshotOptions): Promise<DeltaManifest> {
  validateCheckpointName(opts.previousSnapshotIdentity);
  if (opts.ttlSeconds !== undefined && !(opts.ttlSeconds > 0))
    throw new CheckpointError(
      'invalid_argument',
      `ttlSeconds must be positive (got ${opts.ttlSeconds})`,
    );
  const files = (await opts.next.list()).filter(
    (f) => !FOREIGN_MANIFESTS.has(f) && f !== DELTA_MANIFEST,
  );
  for (const f of files) checkFileName(f, opts.next.where);
  if (!files.some((f) => f.endsWith('.safetensors')))
    throw new CheckpointError(
      'invalid_argument',
      `${opts.next.where} has no .safetensors weights file to take a delta of`,
    );
  const prevFiles = new Set(await opts.previous.list());
  for (const f of files)
    if (f.endsWith('.safetensors') && !prevFiles.has(f))
      throw new CheckpointError(
        'incompatible',
        `${opts.previous.where} has no ${f} to take a delta against: write a full snapshot instead`,
        { file: f },
      );
  const out = await openTarget(opts.target);
  try {
    const entries: DeltaManifest['files'] = [];
    for (const path of files) {
      const isDelta = path.endsWith('.safetensors');
      const prevLocal = opts.previous.localPath?.(path);
      const nextLocal = opts.next.localPath?.(path);
      const sources = {
        prevSource: `${opts.previous.where}/${path}`,
        nextSource: `${opts.next.where}/${path}`,
      };
      let stored: Buffer;
      let full: { size: number; sha256: string };
      const nextTensors = isDelta ? (opts.next.tensors?.(path) ?? null) : null;
      if (nextTensors) {
        // Weights in memory: encoded tensor by tensor, hashed on the way, never written whole.
        const d = await encodeDeltaFileFromTensors(await opts.previous.read(path), nextTensors, {
          level: opts.level,
          ...sources,
        });
        stored = d.file;
        full = d.full;
      } else if (isDelta && prevLocal && nextLocal) {
        // Local files: one tensor at a time, whatever the file size.
        stored = (
          await encodeDeltaFileFromPaths(prevLocal, nextLocal, { level: opts.level, ...sources })
        ).file;
        full = await fileDigest(nextLocal);
      } else {
        const body = await opts.next.read(path);
        stored = isDelta
          ? (
              await encodeDeltaFileAsync(await opts.previous.read(path), body, {
                level: opts.level,
                ...sources,
              })
            ).file
          : body;
        full = { size: body.length, sha256: sha256(body) };
      }
      await out.write(path, stored);
      entries.push({
        path,
        delta: isDelta,
        size: stored.length,
        sha256: sha256(stored),
        fullSize: full.size,
        fullSha256: full.sha256,
      });
    }
    const now = opts.now?.() ?? new Date();
    const manifest: DeltaManifest = {
      previous_snapshot_identity: opts.previousSnapshotIdentity,
      compression_format: COMPRESSION_FORMAT,
      checksum_format: CHECKSUM_FORMAT,
      format: DELTA_FORMAT,
      version: 1,
      createTime: now.toISOString(),
      expireTime:
        opts.ttlSeconds !== undefined
          ? new Date(now.getTime() + opts.ttlSeconds * 1000).toISOString()
          : null,
      files: entries,
    };
    await out.commit(Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
    return manifest;
  } catch (err) {
    await out.abort();
    throw err;
  }
}

/** Parses a manifest's text (CheckpointError 'corrupt' naming `where` when malformed). */
export function parseDeltaManifest(text: string, where: string): DeltaManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError('corrupt', `${where}/${DELTA_MANIFEST} is not valid JSON`, {
      file: DELTA_MANIFEST,
      cause: err,
    });
  }
  const parsed = deltaManifestSchema.safeParse(raw);
  if (!parsed.success)
    throw new CheckpointError(
      'corrupt',
      `${where}/${DELTA_MANIFEST} is malformed: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      { file: DELTA_MANIFEST },
    );
  for (const f of parsed.data.files) checkFileName(f.path, where);
  return parsed.data;
}

/** The committed manifest of a delta snapshot, or null when there is none. */
export async function readDeltaManifest(reader: SnapshotReader): Promise<DeltaManifest | null> {
  if (!(await reader.list()).includes(DELTA_MANIFEST)) return null;
  return parseDeltaManifest((await reader.read(DELTA_MANIFEST)).toString('utf8'), reader.where);
}

export interface ApplyDeltaSnapshotOptions {
  /** The previous (full) snapshot the delta was taken against. */
  base: SnapshotReader;
  delta: SnapshotReader;
  /** Where the reconstructed full snapshot goes (no manifest is written there). */
  target: SnapshotTarget;
}

/**
 * Reconstructs the full snapshot a delta stands for. Every stored file is checked against
 * the manifest (size, sha256), every tensor against its Adler-32, and every reconstructed
 * file against the new file's sha256; any failure throws CheckpointError 'corrupt' naming
 * the file, and leaves the target untouched (directory) or without the partial files.
 */
export async function applyDeltaSnapshot(opts: ApplyDeltaSnapshotOptions): Promise<DeltaManifest> {
  const manifest = await readDeltaManifest(opts.delta);
  if (!manifest)
    throw new CheckpointError(
      'not_found',
      `${opts.delta.where} has no ${DELTA_MANIFEST} (not a committed delta snapshot)`,
    );
  const out = await openTarget(opts.target);
  try {
    for (const f of manifest.files) {
      const where = `${opts.delta.where}/${f.path}`;
      const stored = await opts.delta.read(f.path);
      if (stored.length !== f.size)
        throw new CheckpointError(
          'corrupt',
          `${where} has ${stored.length} bytes, expected ${f.size} (truncated?)`,
          { file: f.path },
        );
      if (sha256(stored) !== f.sha256)
        throw new CheckpointError('corrupt', `${where} fails its sha256 checksum`, {
          file: f.path,
        });
      const mismatch = () =>
        new CheckpointError(
          'corrupt',
          `${where}: the reconstructed file does not match the snapshot's checksum (is ${opts.base.where} the snapshot '${manifest.previous_snapshot_identity}'?)`,
          { file: f.path },
        );
      const baseLocal = opts.base.localPath?.(f.path);
      const outLocal = out.localPath?.(f.path);
      const sources = { prevSource: `${opts.base.where}/${f.path}`, deltaSource: where };
      if (f.delta && baseLocal && outLocal) {
        // Local files: one tensor at a time, whatever the file size.
        await applyDeltaFileToPath(baseLocal, stored, outLocal, sources);
        const h = await fileDigest(outLocal);
        if (h.size !== f.fullSize || h.sha256 !== f.fullSha256) throw mismatch();
        continue;
      }
      const full = f.delta
        ? await applyDeltaFileAsync(await opts.base.read(f.path), stored, {
            ...sources,
            inPlace: true,
          })
        : stored;
      if (full.length !== f.fullSize || sha256(full) !== f.fullSha256) throw mismatch();
      await out.write(f.path, full);
    }
    await out.commit(null);
    return manifest;
  } catch (err) {
    await out.abort();
    throw err;
  }
}

// Writing and reading export directories (HF model dirs, PEFT adapter dirs) in an object
// store or a local directory.
//
// An export is a list of files produced lazily (weights are streamed tensor by tensor). In an
// object store the files go under a prefix and `temper_export.json` is written last with an
// if-absent put: it is the commit point and records every file's size and sha256, so a
// reader can verify the whole export:
//   {"format": "temper-export", "version": 1, "kind": "hf_base" | "hf_merged" | "peft_lora",
//    "createTime": RFC3339, "expireTime": RFC3339 | null, "baseModel": string | null,
//    "files": [{"path": "config.json", "size": 612, "sha256": "…"}, …]}
// In a local directory everything is written to a sibling temporary directory that is
// renamed into place.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { CheckpointError, validatePrefix } from '../dcp/errors.js';
import { type ObjectStore, ObjectStoreError } from '../object-store/types.js';
import type { TensorFileSource } from '../safetensors.js';

export const EXPORT_MANIFEST = 'temper_export.json';

export type ExportKind = 'hf_base' | 'hf_merged' | 'peft_lora';

export type ExportBody = Buffer | string | Readable;

export interface ExportFile {
  /** Relative path: one plain file name. */
  path: string;
  /** Produces the body when the file is written (streams are consumed once). */
  body: () => ExportBody | Promise<ExportBody>;
  /**
   * A weights file's tensors one by one, the same bytes as `body`: a delta is encoded from
   * them without the file being written anywhere first.
   */
  tensors?: TensorFileSource;
}

export const exportManifestSchema = z.object({
  format: z.literal('temper-export'),
  version: z.literal(1),
  kind: z.enum(['hf_base', 'hf_merged', 'peft_lora']),
  createTime: z.iso.datetime(),
  expireTime: z.iso.datetime().nullable(),
  baseModel: z.string().nullable(),
  files: z.array(
    z.object({
      path: z.string(),
      size: z.number().int().nonnegative(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  ),
});
export type ExportManifest = z.infer<typeof exportManifestSchema>;

/** Where an export goes: under a prefix of an object store, or a local directory. */
export type ExportTarget = { store: ObjectStore; prefix: string } | { dir: string };

export interface ExportWriteOptions {
  kind: ExportKind;
  baseModel?: string;
  /** Object stores: the export expires (its manifest says so) after this many seconds. */
  ttlSeconds?: number;
  now?: () => Date;
}

const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;

function checkFileName(path: string): string {
  if (!FILE_NAME.test(path) || path.includes('..'))
    throw new CheckpointError(
      'invalid_name',
      `export file name '${path}' must be a plain file name (no '/' or '..')`,
    );
  return path;
}

function checkFiles(files: readonly ExportFile[]): void {
  const seen = new Set<string>();
  for (const f of files) {
    checkFileName(f.path);
    if (f.path === EXPORT_MANIFEST || seen.has(f.path))
      throw new CheckpointError(
        'invalid_argument',
        `export file '${f.path}' is reserved or repeated`,
      );
    seen.add(f.path);
  }
}

/** A body as a stream of Buffers that hashes and counts what passes through. */
function hashed(body: ExportBody): {
  stream: Readable;
  done: () => { size: number; sha256: string };
} {
  const hash = createHash('sha256');
  let size = 0;
  const source: AsyncIterable<unknown> | Iterable<Buffer> =
    body instanceof Readable ? body : [typeof body === 'string' ? Buffer.from(body, 'utf8') : body];
  async function* gen(): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      hash.update(b);
      size += b.length;
      yield b;
    }
  }
  return {
    // Object mode: pieces pass through as they are (a byte-mode Readable would concatenate them).
    stream: Readable.from(gen(), { objectMode: true, highWaterMark: 4 }),
    done: () => ({ size, sha256: hash.digest('hex') }),
  };
}

function manifestOf(
  files: { path: string; size: number; sha256: string }[],
  opts: ExportWriteOptions,
): ExportManifest {
  const now = opts.now?.() ?? new Date();
  if (opts.ttlSeconds !== undefined && !(opts.ttlSeconds > 0))
    throw new CheckpointError(
      'invalid_argument',
      `ttlSeconds must be positive (got ${opts.ttlSeconds})`,
    );
  return {
    format: 'temper-export',
    version: 1,
    kind: opts.kind,
    createTime: now.toISOString(),
    expireTime:
      opts.ttlSeconds !== undefined
        ? new Date(now.getTime() + opts.ttlSeconds * 1000).toISOString()
        : null,
    baseModel: opts.baseModel ?? null,
    files,
  };
}

/** Writes the files, then the manifest (if-absent commit in stores). */
export async function writeExport(
  target: ExportTarget,
  files: readonly ExportFile[],
  opts: ExportWriteOptions,
): Promise<ExportManifest> {
  checkFiles(files);
  if ('dir' in target) return writeExportDirectory(target.dir, files, opts);
  const prefix = validatePrefix(target.prefix);
  const key = (p: string) => (prefix ? `${prefix}/${p}` : p);
  if (await target.store.stat(key(EXPORT_MANIFEST)))
    throw new CheckpointError(
      'already_exists',
      `an export is already committed at ${target.store.url}/${prefix}`,
    );
  const written: ExportManifest['files'] = [];
  for (const f of files) {
    const h = hashed(await f.body());
    await target.store.put(key(f.path), h.stream);
    written.push({ path: f.path, ...h.done() });
  }
  const manifest = manifestOf(written, opts);
  try {
    await target.store.put(key(EXPORT_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, {
      ifAbsent: true,
      contentType: 'application/json',
    });
  } catch (err) {
    if (err instanceof ObjectStoreError && err.code === 'already_exists')
      throw new CheckpointError(
        'already_exists',
        `another export was committed at ${target.store.url}/${prefix} first`,
      );
    throw err;
  }
  return manifest;
}

/**
 * Writes a local directory atomically (temporary sibling renamed into place, replacing any
 * previous directory). The manifest is included unless `manifest: false`.
 */
export async function writeExportDirectory(
  dir: string,
  files: readonly ExportFile[],
  opts: ExportWriteOptions & { manifest?: boolean },
): Promise<ExportManifest> {
  checkFiles(files);
  const tmp = join(
    dirname(dir),
    `.${basename(dir)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
  );
  await mkdir(tmp, { recursive: true });
  try {
    const written: ExportManifest['files'] = [];
    for (const f of files) {
      const h = hashed(await f.body());
      await pipeline(h.stream, createWriteStream(join(tmp, f.path)));
      written.push({ path: f.path, ...h.done() });
    }
    const manifest = manifestOf(written, opts);
    if (opts.manifest !== false)
      await pipeline(
        Readable.from([`${JSON.stringify(manifest, null, 2)}\n`]),
        createWriteStream(join(tmp, EXPORT_MANIFEST)),
      );
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    return manifest;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/** Read access to an export (or a base model directory): a local dir or a store prefix. */
export interface ExportSource {
  readonly where: string;
  read(path: string): Promise<Buffer>;
  stream(path: string): Promise<Readable>;
  /** null when absent. */
  size(path: string): Promise<number | null>;
}

export function directorySource(dir: string): ExportSource {
  const path = (p: string) => join(dir, checkFileName(p));
  return {
    where: dir,
    async read(p) {
      try {
        return await readFile(path(p));
      } catch (err) {
        throw new CheckpointError(
          'not_found',
          `${join(dir, p)}: cannot read (${(err as Error).message})`,
          { file: p, cause: err },
        );
      }
    },
    async stream(p) {
      const { createReadStream } = await import('node:fs');
      if ((await this.size(p)) === null)
        throw new CheckpointError('not_found', `${join(dir, p)} does not exist`, { file: p });
      return createReadStream(path(p), { highWaterMark: 1 << 20 });
    },
    async size(p) {
      try {
        const st = await stat(path(p));
        return st.isFile() ? st.size : null;
      } catch {
        return null;
      }
    },
  };
}

export function storeSource(store: ObjectStore, prefix: string): ExportSource {
  const pre = validatePrefix(prefix);
  const key = (p: string) => (pre ? `${pre}/${checkFileName(p)}` : checkFileName(p));
  const notFound = (p: string, err: unknown) =>
    err instanceof ObjectStoreError && err.code === 'not_found'
      ? new CheckpointError('not_found', `${store.url}/${key(p)} does not exist`, {
          file: p,
          cause: err,
        })
      : err;
  return {
    where: `${store.url}/${pre}`,
    async read(p) {
      try {
        return await store.get(key(p));
      } catch (err) {
        throw notFound(p, err);
      }
    },
    async stream(p) {
      try {
        return await store.getStream(key(p));
      } catch (err) {
        throw notFound(p, err);
      }
    },
    async size(p) {
      return (await store.stat(key(p)))?.size ?? null;
    },
  };
}

export function asSource(source: ExportSource | string): ExportSource {
  return typeof source === 'string' ? directorySource(source) : source;
}

/** The manifest of a committed export, or null when there is none (a plain HF/PEFT dir). */
export async function readExportManifest(source: ExportSource): Promise<ExportManifest | null> {
  if ((await source.size(EXPORT_MANIFEST)) === null) return null;
  let raw: unknown;
  try {
    raw = JSON.parse((await source.read(EXPORT_MANIFEST)).toString('utf8'));
  } catch (err) {
    throw new CheckpointError('corrupt', `${source.where}/${EXPORT_MANIFEST} is not valid JSON`, {
      file: EXPORT_MANIFEST,
      cause: err,
    });
  }
  const parsed = exportManifestSchema.safeParse(raw);
  if (!parsed.success)
    throw new CheckpointError('corrupt', `${source.where}/${EXPORT_MANIFEST} is malformed`, {
      file: EXPORT_MANIFEST,
    });
  return parsed.data;
}

/** Checks every file the manifest lists against its size and sha256; errors name the file. */
export async function verifyExport(source: ExportSource): Promise<ExportManifest> {
  const manifest = await readExportManifest(source);
  if (!manifest)
    throw new CheckpointError(
      'not_found',
      `${source.where} has no ${EXPORT_MANIFEST} (not a committed export)`,
    );
  for (const f of manifest.files) {
    const where = `${source.where}/${f.path}`;
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of await source.stream(f.path)) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
    } catch (err) {
      throw new CheckpointError('corrupt', `${where} is missing or unreadable`, {
        file: f.path,
        cause: err,
      });
    }
    if (size !== f.size)
      throw new CheckpointError(
        'corrupt',
        `${where} has ${size} bytes, expected ${f.size} (truncated?)`,
        { file: f.path },
      );
    const digest = hash.digest('hex');
    if (digest !== f.sha256)
      throw new CheckpointError(
        'corrupt',
        `${where} fails its checksum (sha256 ${digest}, expected ${f.sha256})`,
        { file: f.path },
      );
  }
  return manifest;
}

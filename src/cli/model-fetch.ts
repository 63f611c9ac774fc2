/**
 * A model id made into local directories (`temper model score --model <id>`): the files come
 * from the model's :getDownloadEndpoint (asked with the user's key) into a cache keyed by
 * content — the sha256 of every file, as the control plane recorded them at import or
 * promotion — so the same model is fetched once, whatever its name, and a directory in the
 * cache is always whole: files are downloaded into `.partial/<key>/` (a broken download resumes
 * there from the bytes it has, each file checked against its sha256) and the directory is
 * renamed into place only once every file is complete. A LoRA adapter comes with its base.
 *
 * Two processes fetching the same model take turns on a lock per cache key (proper-lockfile:
 * a lock directory whose mtime the holder refreshes, so a killed holder's lock goes stale and
 * is taken over): without it, both would append to the same partial files, and a process
 * still writing after the other renamed the folder would write into the finished cache entry.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { lock } from 'proper-lockfile';
import { z } from 'zod';
import { fileDigest } from '../util/file-digest.js';
import type { TemperApi } from './api/client.js';
import { defaultDataDir } from './stack/settings.js';

const endpointSchema = z.object({
  filenameToSignedUrls: z.record(z.string(), z.string()),
  filenameToSize: z.record(z.string(), z.number()),
  filenameToSha256: z.record(z.string(), z.string()),
  baseModel: z.string().optional(),
});

const MODEL_NAME = /^accounts\/[a-z0-9][a-z0-9-]*\/models\/[a-z0-9][a-z0-9-]*$/;
const MODEL_ID = /^[a-z0-9][a-z0-9-]*$/;
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export interface FetchedModel {
  name: string;
  /** The full model's directory (a LoRA adapter's base model). */
  dir: string;
  /** A LoRA adapter's own directory. */
  adapterDir?: string;
}

export interface FetchOptions {
  /** Default: $TEMPER_HOME/cache/models (~/.temper/cache/models). */
  cacheDir?: string;
  /** Bytes fetched so far of `total` (files already cached count as fetched). */
  onProgress?: (done: number, total: number, file: string) => void;
  /** Called once when another process holds the download of the same files. */
  onWait?: (name: string) => void;
}

// The lock's holder refreshes it every LOCK_UPDATE_MS; one untouched for LOCK_STALE_MS is a
// dead holder's, and is taken over.
const LOCK_STALE_MS = 20_000;
const LOCK_UPDATE_MS = 5_000;

/** Runs `fn` holding the lock of path `dir` (`dir.lock`), waiting for another holder. */
async function withLock<T>(
  dir: string,
  name: string,
  opts: FetchOptions,
  fn: () => Promise<T>,
): Promise<T> {
  await mkdir(dirname(dir), { recursive: true });
  const settings = { realpath: false, stale: LOCK_STALE_MS, update: LOCK_UPDATE_MS };
  let release: () => Promise<void>;
  try {
    release = await lock(dir, settings);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ELOCKED') throw err;
    opts.onWait?.(name);
    release = await lock(dir, {
      ...settings,
      retries: { forever: true, minTimeout: 100, maxTimeout: 1_000 },
    });
  }
  try {
    return await fn();
  } finally {
    await release();
  }
}

/** `accounts/a/models/m`, or an id of the connection's account; null for anything else. */
export function modelNameOf(ref: string, account: string): string | null {
  if (MODEL_NAME.test(ref)) return ref;
  if (MODEL_ID.test(ref)) return `accounts/${account}/models/${ref}`;
  return null;
}

export function modelCacheDir(env: Record<string, string | undefined> = process.env): string {
  return join(defaultDataDir(env), 'cache', 'models');
}

async function sizeOf(path: string): Promise<number | null> {
  const st = await stat(path).catch(() => undefined);
  return st?.isFile() ? st.size : null;
}

/** Downloads `name`'s files (not its base) into the cache; returns the directory. */
async function fetchOne(api: TemperApi, name: string, cache: string, opts: FetchOptions) {
  const ep = await api.request('GET', `/v1/${name}:getDownloadEndpoint`, endpointSchema);
  const files = Object.keys(ep.filenameToSignedUrls).sort();
  if (files.length === 0) throw new Error(`${name} has no files to download`);
  for (const f of files) {
    // The names become paths here: only plain file names are accepted.
    if (!FILE_NAME.test(f)) throw new Error(`${name}: the control plane names a file '${f}'`);
    if (ep.filenameToSize[f] === undefined || !ep.filenameToSha256[f])
      throw new Error(`${name}: the control plane gave no size and sha256 for ${f}`);
  }
  const key = createHash('sha256')
    .update(files.map((f) => `${f}\0${ep.filenameToSha256[f]}\n`).join(''))
    .digest('hex');
  const final = join(cache, key);
  const cached = async () => (await stat(final).catch(() => undefined))?.isDirectory() === true;
  if (await cached()) return { dir: final, ep };
  const staging = join(cache, '.partial', key);
  await withLock(staging, name, opts, async () => {
    // The holder before us may have finished the same files.
    if (!(await cached())) await download(name, ep, files, staging, final, opts);
  });
  return { dir: final, ep };
}

/** Fetches `files` into `staging` (resuming what is there), then renames it to `final`. */
async function download(
  name: string,
  ep: z.output<typeof endpointSchema>,
  files: string[],
  staging: string,
  final: string,
  opts: FetchOptions,
): Promise<void> {
  await mkdir(staging, { recursive: true });
  const total = files.reduce((s, f) => s + ep.filenameToSize[f]!, 0);
  let done = 0;
  for (const f of files) {
    const size = ep.filenameToSize[f]!;
    await downloadFile(
      `${name}/${f}`,
      ep.filenameToSignedUrls[f]!,
      join(staging, f),
      size,
      ep.filenameToSha256[f]!,
      (got) => opts.onProgress?.(done + got, total, f),
    );
    done += size;
    opts.onProgress?.(done, total, f);
  }
  await rename(staging, final);
}

/**
 * One file to `path`, resumed with a Range request from the bytes already there, then checked
 * against its size and sha256 (a file that fails is removed). `onBytes` gets the file's bytes
 * so far.
 */
async function downloadFile(
  what: string,
  url: string,
  path: string,
  size: number,
  sha256: string,
  onBytes: (got: number) => void,
): Promise<void> {
  let have = (await sizeOf(path)) ?? 0;
  if (have > size) {
    await rm(path);
    have = 0;
  }
  if (have < size) {
    const res = await fetch(url, { headers: have > 0 ? { range: `bytes=${have}-` } : {} });
    if (!res.ok || !res.body)
      throw new Error(`download of ${what} failed (${res.status}): ${await res.text()}`);
    // 200 to a ranged request: the whole file comes again.
    if (res.status !== 206) have = 0;
    let got = have;
    const counted = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        got += chunk.length;
        onBytes(got);
        cb(null, chunk);
      },
    });
    await pipeline(
      Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
      counted,
      createWriteStream(path, { flags: have > 0 ? 'a' : 'w' }),
    );
  }
  if ((await sizeOf(path)) !== size || (await fileDigest(path)).sha256 !== sha256) {
    await rm(path, { force: true });
    throw new Error(
      `${what}: the downloaded file does not match its size and sha256 (removed; run again)`,
    );
  }
}

/** The model `name` in local directories, downloading what the cache lacks. */
export async function fetchModel(
  api: TemperApi,
  name: string,
  opts: FetchOptions = {},
): Promise<FetchedModel> {
  const cache = opts.cacheDir ?? modelCacheDir();
  const own = await fetchOne(api, name, cache, opts);
  if (!own.ep.baseModel) return { name, dir: own.dir };
  const base = await fetchOne(api, own.ep.baseModel, cache, opts);
  if (base.ep.baseModel)
    throw new Error(`${name}: its base ${own.ep.baseModel} is itself a LoRA adapter`);
  return { name, dir: base.dir, adapterDir: own.dir };
}

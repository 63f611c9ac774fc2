/**
 * A model id made into local directories (`temper model score --model <id>`): the files come
 * from the model's :getDownloadEndpoint (asked with the user's key) into a cache keyed by
 * content — the sha256 of every file, as the control plane recorded them at import or
 * promotion — so the same model is fetched once, whatever its name, and a directory in the
 * cache is always whole: files are downloaded into `.partial/<key>/` (a broken download resumes
 * there from the bytes it has, each file checked against its sha256) and the directory is
 * renamed into place only once every file is complete. A LoRA adapter comes with its base.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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
  if ((await stat(final).catch(() => undefined))?.isDirectory()) return { dir: final, ep };

  const staging = join(cache, '.partial', key);
  await mkdir(staging, { recursive: true });
  const total = files.reduce((s, f) => s + ep.filenameToSize[f]!, 0);
  let done = 0;
  for (const f of files) {
    const path = join(staging, f);
    const size = ep.filenameToSize[f]!;
    const sha = ep.filenameToSha256[f]!;
    let have = (await sizeOf(path)) ?? 0;
    if (have > size) {
      await rm(path);
      have = 0;
    }
    if (have < size) {
      const res = await fetch(ep.filenameToSignedUrls[f]!, {
        headers: have > 0 ? { range: `bytes=${have}-` } : {},
      });
      if (!res.ok || !res.body)
        throw new Error(`download of ${name}/${f} failed (${res.status}): ${await res.text()}`);
      // 200 to a ranged request: the whole file comes again.
      if (res.status !== 206) have = 0;
      let got = have;
      const counted = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          got += chunk.length;
          opts.onProgress?.(done + got, total, f);
          cb(null, chunk);
        },
      });
      await pipeline(
        Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
        counted,
        createWriteStream(path, { flags: have > 0 ? 'a' : 'w' }),
      );
    }
    if ((await sizeOf(path)) !== size || (await fileDigest(path)).sha256 !== sha) {
      await rm(path, { force: true });
      throw new Error(
        `${name}/${f}: the downloaded file does not match its size and sha256 (removed; run again)`,
      );
    }
    done += size;
    opts.onProgress?.(done, total, f);
  }
  try {
    await rename(staging, final);
  } catch (err) {
    // Another process finished the same model first: its directory is as good as ours.
    if (!(await stat(final).catch(() => undefined))?.isDirectory()) throw err;
    await rm(staging, { recursive: true, force: true });
  }
  return { dir: final, ep };
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

// Test helpers for checkpoint tests: a minimal file-backed ObjectStore (atomic puts through a
// staging directory beside the root, if-absent via link()), throttling and a tiny model.
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync } from 'node:fs';
import {
  link,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type ObjectInfo,
  type ObjectStore,
  ObjectStoreError,
  type PutOptions,
  validateKey,
} from '../../src/checkpoints/object-store/types.js';

export class TestFileStore implements ObjectStore {
  readonly url: string;
  private readonly staging: string;

  constructor(readonly root: string) {
    this.url = `file://${root}`;
    this.staging = `${root}.staging`;
  }

  private path(key: string): string {
    return join(this.root, ...validateKey(key).split('/'));
  }

  async put(
    key: string,
    body: Buffer | Uint8Array | string | Readable,
    opts: PutOptions = {},
  ): Promise<ObjectInfo> {
    const target = this.path(key);
    await mkdir(this.staging, { recursive: true });
    const tmp = join(this.staging, randomUUID());
    try {
      if (body instanceof Readable) await pipeline(body, createWriteStream(tmp));
      else await writeFile(tmp, body);
      await mkdir(dirname(target), { recursive: true });
      if (opts.ifAbsent) {
        try {
          await link(tmp, target);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST')
            throw new ObjectStoreError('already_exists', `object '${key}' already exists`);
          throw err;
        }
        await unlink(tmp);
      } else await rename(tmp, target);
    } finally {
      await rm(tmp, { force: true });
    }
    return (await this.stat(key))!;
  }

  async getStream(key: string): Promise<Readable> {
    const p = this.path(key);
    try {
      await stat(p);
    } catch {
      throw new ObjectStoreError('not_found', `object '${key}' not found`);
    }
    return createReadStream(p, { highWaterMark: 1 << 20 });
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await readFile(this.path(key));
    } catch {
      throw new ObjectStoreError('not_found', `object '${key}' not found`);
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    try {
      const st = await stat(this.path(key));
      if (!st.isFile()) return null;
      return { key, size: st.size, updated: st.mtime, etag: `${st.mtimeMs}-${st.size}` };
    } catch {
      return null;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(join(dir, e.name), key);
        else if (key.startsWith(prefix)) {
          const info = await this.stat(key);
          if (info) out.push(info);
        }
      }
    };
    await walk(this.root, '');
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    await rm(this.path(key), { force: true });
  }
}

export function tempDir(prefix = 'ckpt-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function tempStore(): TestFileStore {
  return new TestFileStore(join(tempDir(), 'store'));
}

/** Wraps a store so every put streams at most `bytesPerSecond` (a slow writer to kill). */
export function throttled(store: ObjectStore, bytesPerSecond: number): ObjectStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop !== 'put') return Reflect.get(target, prop, receiver);
      return (key: string, body: Buffer | Uint8Array | string | Readable, opts?: PutOptions) => {
        if (!(body instanceof Readable)) return target.put(key, body, opts);
        async function* slow(): AsyncGenerator<Buffer> {
          for await (const chunk of body as Readable) {
            const buf = chunk as Buffer;
            for (let i = 0; i < buf.length; i += 1 << 16) {
              const piece = buf.subarray(i, i + (1 << 16));
              await new Promise((r) => setTimeout(r, (piece.length / bytesPerSecond) * 1000));
              yield piece;
            }
          }
        }
        return target.put(key, Readable.from(slow()), opts);
      };
    },
  });
}

/** Deterministic pseudo-random float32 data. */
export function randomData(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 4294967296 - 0.5) * 2;
  }
  return out;
}

// Test helpers for checkpoint tests: temporary file:// stores, a throttled store (a slow
// writer to kill) and deterministic data.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  FileObjectStore,
  type ObjectStore,
  openObjectStore,
  type PutOptions,
} from '../../src/checkpoints/object-store/index.js';

export function tempDir(prefix = 'ckpt-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A fresh file:// store (the real one, through openObjectStore) in a temporary directory. */
export async function tempStore(): Promise<FileObjectStore> {
  return fileStore(join(tempDir(), 'store'));
}

export async function fileStore(root: string): Promise<FileObjectStore> {
  const store = await openObjectStore(`file://${root}`);
  if (!(store instanceof FileObjectStore))
    throw new Error('file:// did not open a FileObjectStore');
  return store;
}

/** Yields `chunks` in 64 KiB pieces, at most `bytesPerSecond`. */
async function* slowly(
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  bytesPerSecond: number,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks)
    for (let i = 0; i < chunk.byteLength; i += 1 << 16) {
      const piece = chunk.subarray(i, i + (1 << 16));
      await new Promise((r) => setTimeout(r, (piece.byteLength / bytesPerSecond) * 1000));
      yield piece;
    }
}

/**
 * Wraps a store so every streamed put (and the file:// store's putPieces) writes at most
 * `bytesPerSecond` (a slow writer to kill).
 */
export function throttled(store: ObjectStore, bytesPerSecond: number): ObjectStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'putPieces' && target instanceof FileObjectStore)
        return (key: string, pieces: Iterable<Uint8Array>, opts?: PutOptions) =>
          target.putPieces(key, slowly(pieces, bytesPerSecond), opts);
      if (prop !== 'put') return Reflect.get(target, prop, receiver);
      return (key: string, body: Buffer | Uint8Array | string | Readable, opts?: PutOptions) => {
        if (!(body instanceof Readable)) return target.put(key, body, opts);
        return target.put(key, Readable.from(slowly(body, bytesPerSecond)), opts);
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

/** The same store behind a plain object (no file:// fast paths: everything streams). */
export function opaque(store: ObjectStore): ObjectStore {
  return {
    url: store.url,
    put: (key, body, opts) => store.put(key, body, opts),
    getStream: (key) => store.getStream(key),
    get: (key) => store.get(key),
    stat: (key) => store.stat(key),
    list: (prefix) => store.list(prefix),
    delete: (key) => store.delete(key),
  };
}

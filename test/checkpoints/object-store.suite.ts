/**
 * The conformance suite every ObjectStore passes (file://, s3:// against moto, gs:// against
 * fake-gcs-server). `openStore(name)` returns a store rooted at a fresh, empty place named
 * `name` (a directory, or a key prefix in a shared bucket); names differ between calls.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  type ObjectInfo,
  type ObjectStore,
  ObjectStoreError,
  type ObjectStoreErrorCode,
} from '../../src/checkpoints/object-store/index.js';

export type OpenStore = (name: string) => Promise<ObjectStore>;

export interface ConformanceOptions {
  /** The URL scheme the store's url starts with. */
  scheme: 'file' | 's3' | 'gs';
  /** Size of the streamed multi-MB body; default 6 MiB + 123 bytes. */
  bigSize?: number;
}

/** Deterministic bytes: SHA-256 in counter mode. */
export function pseudoRandomBytes(size: number, seed: string): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let off = 0, i = 0; off < size; i++) {
    const block = createHash('sha256').update(`${seed}:${i}`).digest();
    off += block.copy(out, off, 0, Math.min(block.length, size - off));
  }
  return out;
}

/** Streams `data` in chunks of `chunk` bytes, yielding to the event loop between chunks. */
export function chunked(data: Buffer, chunk = 64 * 1024): Readable {
  return Readable.from(
    (async function* () {
      for (let off = 0; off < data.length; off += chunk) {
        yield data.subarray(off, Math.min(off + chunk, data.length));
        await new Promise((resolve) => setImmediate(resolve));
      }
    })(),
  );
}

/** A stream that yields `head`, then waits at a gate until released, then yields `tail`. */
export function gatedStream(
  head: Buffer,
  tail: Buffer,
): { stream: Readable; atGate: Promise<void>; release: () => void } {
  let release!: () => void;
  let atGateResolve!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const atGate = new Promise<void>((resolve) => {
    atGateResolve = resolve;
  });
  const stream = Readable.from(
    (async function* () {
      yield head;
      atGateResolve();
      await gate;
      yield tail;
    })(),
  );
  return { stream, atGate, release };
}

function sha(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readStream(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

export async function expectStoreError(
  promise: Promise<unknown>,
  code: ObjectStoreErrorCode,
): Promise<ObjectStoreError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected ObjectStoreError '${code}'`).toBeInstanceOf(ObjectStoreError);
  expect((error as ObjectStoreError).code).toBe(code);
  return error as ObjectStoreError;
}

const keysOf = (infos: ObjectInfo[]) => infos.map((i) => i.key);

export const INVALID_KEYS = [
  '',
  '/abs',
  '../up',
  'a/../../etc/passwd',
  'a/..',
  '..',
  '.',
  'a/./b',
  'a//b',
  'a/',
  'a\\b',
  '..\\x',
  'nul\0byte',
  'x'.repeat(1025),
];

export function objectStoreConformance(
  label: string,
  openStore: OpenStore,
  options: ConformanceOptions,
): void {
  const bigSize = options.bigSize ?? 6 * 1024 * 1024 + 123;
  const fresh = () => openStore(`t-${randomUUID().slice(0, 8)}`);

  describe(`ObjectStore conformance: ${label}`, () => {
    it('has a url with its scheme', async () => {
      const store = await fresh();
      expect(store.url.startsWith(`${options.scheme}://`)).toBe(true);
    });

    it('round-trips Buffer, Uint8Array view, string and empty bodies', async () => {
      const store = await fresh();
      const buf = Buffer.from('hello, object store');
      const backing = new Uint8Array([9, 9, 1, 2, 3, 4, 9]);
      const view = backing.subarray(2, 6);
      const info = await store.put('a/buffer.bin', buf, {
        contentType: 'application/octet-stream',
      });
      expect(info).toMatchObject({ key: 'a/buffer.bin', size: buf.length });
      expect(typeof info.etag).toBe('string');
      expect(info.etag.length).toBeGreaterThan(0);
      expect(info.updated).toBeInstanceOf(Date);
      await store.put('a/view.bin', view);
      await store.put('a/text.txt', 'grüße ✓');
      await store.put('a/empty', Buffer.alloc(0));
      expect(await store.get('a/buffer.bin')).toEqual(buf);
      expect([...(await store.get('a/view.bin'))]).toEqual([1, 2, 3, 4]);
      expect((await store.get('a/text.txt')).toString('utf8')).toBe('grüße ✓');
      expect((await store.get('a/empty')).length).toBe(0);
      expect(await readStream(await store.getStream('a/buffer.bin'))).toEqual(buf);
      expect((await readStream(await store.getStream('a/empty'))).length).toBe(0);
      expect(await store.stat('a/text.txt')).toMatchObject({
        key: 'a/text.txt',
        size: Buffer.byteLength('grüße ✓'),
      });
    });

    it('streams a multi-MB body up and down', async () => {
      const store = await fresh();
      const data = pseudoRandomBytes(bigSize, 'big');
      const info = await store.put('ckpt/weights.safetensors', chunked(data));
      expect(info.size).toBe(bigSize);
      const st = await store.stat('ckpt/weights.safetensors');
      expect(st).toMatchObject({ key: 'ckpt/weights.safetensors', size: bigSize, etag: info.etag });
      const down = await readStream(await store.getStream('ckpt/weights.safetensors'));
      expect(down.length).toBe(bigSize);
      expect(sha(down)).toBe(sha(data));
      expect(sha(await store.get('ckpt/weights.safetensors'))).toBe(sha(data));
      // An empty stream is an empty object.
      await store.put('ckpt/empty', Readable.from([]));
      expect((await store.get('ckpt/empty')).length).toBe(0);
    });

    it('overwrites: new content and a new etag', async () => {
      const store = await fresh();
      const first = await store.put('k', 'one');
      const second = await store.put('k', 'two, longer');
      expect((await store.get('k')).toString()).toBe('two, longer');
      expect(second.size).toBe(11);
      expect(second.etag).not.toBe(first.etag);
      expect((await store.stat('k'))?.etag).toBe(second.etag);
    });

    it('lists by prefix, sorted by key', async () => {
      const store = await fresh();
      const keys = ['b/2', 'a/2', 'a/10', 'ab', 'a/1', 'a/sub/x', 'c', 'a/sub/y/z'];
      await Promise.all(keys.map((k, i) => store.put(k, Buffer.alloc(i + 1, i))));
      expect(keysOf(await store.list(''))).toEqual([
        'a/1',
        'a/10',
        'a/2',
        'a/sub/x',
        'a/sub/y/z',
        'ab',
        'b/2',
        'c',
      ]);
      expect(keysOf(await store.list('a/'))).toEqual([
        'a/1',
        'a/10',
        'a/2',
        'a/sub/x',
        'a/sub/y/z',
      ]);
      expect(keysOf(await store.list('a'))).toEqual([
        'a/1',
        'a/10',
        'a/2',
        'a/sub/x',
        'a/sub/y/z',
        'ab',
      ]);
      expect(keysOf(await store.list('a/1'))).toEqual(['a/1', 'a/10']);
      expect(keysOf(await store.list('a/sub/y/'))).toEqual(['a/sub/y/z']);
      expect(keysOf(await store.list('a/s'))).toEqual(['a/sub/x', 'a/sub/y/z']);
      expect(await store.list('zzz')).toEqual([]);
      expect(await store.list('nothing/here/')).toEqual([]);
      const listed = await store.list('b/');
      expect(listed).toHaveLength(1);
      expect(listed[0]).toMatchObject({ key: 'b/2', size: 1 });
      const st = await store.stat('b/2');
      expect(listed[0]?.etag).toBe(st?.etag);
      expect(listed[0]?.updated.getTime()).toBe(st?.updated.getTime());
    });

    it('keeps stores with neighbouring roots apart', async () => {
      const name = `n-${randomUUID().slice(0, 8)}`;
      const a = await openStore(name);
      const b = await openStore(`${name}x`);
      await a.put('k', 'a');
      await b.put('k', 'b');
      expect(keysOf(await a.list(''))).toEqual(['k']);
      expect((await a.get('k')).toString()).toBe('a');
      expect((await b.get('k')).toString()).toBe('b');
    });

    it('stat: null when absent, size/updated/etag when present', async () => {
      const store = await fresh();
      expect(await store.stat('missing')).toBeNull();
      expect(await store.stat('missing/deeper/key')).toBeNull();
      const before = Date.now();
      await store.put('dir/obj', Buffer.alloc(1000, 7));
      // A directory-like prefix is not an object.
      expect(await store.stat('dir')).toBeNull();
      const st = await store.stat('dir/obj');
      expect(st).not.toBeNull();
      expect(st?.key).toBe('dir/obj');
      expect(st?.size).toBe(1000);
      expect(st?.etag.length).toBeGreaterThan(0);
      // Servers keep second precision; allow clock skew of a few seconds.
      expect(Math.abs((st?.updated.getTime() ?? 0) - before)).toBeLessThan(60_000);
    });

    it('delete is idempotent', async () => {
      const store = await fresh();
      await store.delete('never-was');
      await store.delete('never/was/either');
      await store.put('x/y', 'v');
      await store.put('x/z', 'w');
      await store.delete('x/y');
      await store.delete('x/y');
      expect(await store.stat('x/y')).toBeNull();
      await expectStoreError(store.get('x/y'), 'not_found');
      expect(keysOf(await store.list(''))).toEqual(['x/z']);
      // A deleted key can be created again, also with ifAbsent.
      await store.put('x/y', 'again', { ifAbsent: true });
      expect((await store.get('x/y')).toString()).toBe('again');
    });

    it('not_found for get and getStream of absent keys', async () => {
      const store = await fresh();
      await expectStoreError(store.get('absent'), 'not_found');
      await expectStoreError(store.getStream('absent'), 'not_found');
      await expectStoreError(store.get('no/such/dir/key'), 'not_found');
      await store.put('dir/file', 'v');
      const e = await expectStoreError(store.get('dir'), 'not_found');
      expect(e.message).toContain("'dir'");
    });

    it('ifAbsent creates once, then refuses with already_exists and keeps the content', async () => {
      const store = await fresh();
      await store.put('commit', 'first', { ifAbsent: true });
      const e = await expectStoreError(
        store.put('commit', 'second', { ifAbsent: true }),
        'already_exists',
      );
      expect(e.message).toContain('commit');
      await expectStoreError(
        store.put('commit', chunked(Buffer.from('third')), { ifAbsent: true }),
        'already_exists',
      );
      expect((await store.get('commit')).toString()).toBe('first');
      // Without ifAbsent an overwrite goes through.
      await store.put('commit', 'fourth');
      expect((await store.get('commit')).toString()).toBe('fourth');
    });

    it('ifAbsent race: of two concurrent creators exactly one wins', async () => {
      const store = await fresh();
      for (let round = 0; round < 6; round++) {
        const key = `race/${round}/COMMIT`;
        const bodies = [`writer-a-${round}`, `writer-b-${round}`];
        // Half the rounds race streamed bodies, half in-memory ones.
        const results = await Promise.allSettled(
          bodies.map((b) =>
            store.put(key, round % 2 === 0 ? Buffer.from(b) : chunked(Buffer.from(b), 3), {
              ifAbsent: true,
            }),
          ),
        );
        const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
        expect(
          winners,
          `round ${round}: ${JSON.stringify(results.map((r) => r.status))}`,
        ).toHaveLength(1);
        const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
        expect(loser.reason).toBeInstanceOf(ObjectStoreError);
        expect((loser.reason as ObjectStoreError).code).toBe('already_exists');
        expect((await store.get(key)).toString()).toBe(bodies[winners[0] as number]);
      }
    });

    it('ifAbsent with a multi-MB streamed body refuses an existing key', async () => {
      const store = await fresh();
      await store.put('big/COMMIT', 'small winner');
      const data = pseudoRandomBytes(bigSize, 'loser');
      await expectStoreError(
        store.put('big/COMMIT', chunked(data), { ifAbsent: true }),
        'already_exists',
      );
      expect((await store.get('big/COMMIT')).toString()).toBe('small winner');
      expect(keysOf(await store.list('big/'))).toEqual(['big/COMMIT']);
    });

    it('never shows a partial object while a streamed put is in flight', async () => {
      const store = await fresh();
      const head = pseudoRandomBytes(256 * 1024, 'head');
      const tail = pseudoRandomBytes(256 * 1024, 'tail');
      const { stream, atGate, release } = gatedStream(head, tail);
      const put = store.put('inflight/obj', stream);
      await atGate;
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await store.stat('inflight/obj')).toBeNull();
      expect(await store.list('')).toEqual([]);
      await expectStoreError(store.get('inflight/obj'), 'not_found');
      release();
      const info = await put;
      expect(info.size).toBe(head.length + tail.length);
      expect(sha(await store.get('inflight/obj'))).toBe(sha(Buffer.concat([head, tail])));
      expect(keysOf(await store.list(''))).toEqual(['inflight/obj']);
    });

    it('a put whose body stream fails leaves no object (and keeps an old one)', async () => {
      const store = await fresh();
      const failing = () =>
        Readable.from(
          (async function* () {
            yield pseudoRandomBytes(128 * 1024, 'partial');
            throw new Error('body source broke');
          })(),
        );
      await expect(store.put('broken/obj', failing())).rejects.toThrow();
      expect(await store.stat('broken/obj')).toBeNull();
      expect(await store.list('')).toEqual([]);
      await store.put('broken/old', 'old');
      await expect(store.put('broken/old', failing())).rejects.toThrow();
      expect((await store.get('broken/old')).toString()).toBe('old');
      expect(keysOf(await store.list(''))).toEqual(['broken/old']);
    });

    it('refuses invalid keys (path traversal, empty segments) and changes nothing', async () => {
      const store = await fresh();
      for (const key of INVALID_KEYS) {
        await expectStoreError(store.put(key, 'x'), 'invalid_key');
        await expectStoreError(store.put(key, 'x', { ifAbsent: true }), 'invalid_key');
        await expectStoreError(store.get(key), 'invalid_key');
        await expectStoreError(store.getStream(key), 'invalid_key');
        await expectStoreError(store.stat(key), 'invalid_key');
        await expectStoreError(store.delete(key), 'invalid_key');
      }
      for (const prefix of ['../', 'a/../', '/abs', 'a//', '..\\', './x'])
        await expectStoreError(store.list(prefix), 'invalid_key');
      expect(await store.list('')).toEqual([]);
    });

    it('handles unicode and URL-special characters in keys', async () => {
      const store = await fresh();
      const keys = [
        'ünïcödé/日本語/重み.safetensors',
        'emoji/😀.bin',
        'emoji/\uFF5E.bin',
        'special/with space+plus%percent#hash?query&amp=1',
        'special/quote\'"<>|*:~',
        'nfc/\u00e9',
        'nfc/e\u0301',
      ];
      for (const [i, key] of keys.entries()) await store.put(key, `value ${i}`);
      for (const [i, key] of keys.entries()) {
        expect((await store.get(key)).toString(), key).toBe(`value ${i}`);
        expect((await store.stat(key))?.key).toBe(key);
      }
      // Sorted by UTF-8 bytes: U+FF5E (EF BD 9E) before U+1F600 (F0 9F 98 80), which UTF-16
      // order would put the other way round; NFD 'e\u0301' before NFC '\u00e9'.
      expect(keysOf(await store.list('emoji/'))).toEqual(['emoji/\uFF5E.bin', 'emoji/😀.bin']);
      expect(keysOf(await store.list('nfc/'))).toEqual(['nfc/e\u0301', 'nfc/\u00e9']);
      expect(keysOf(await store.list('ünïcödé/日本'))).toEqual(['ünïcödé/日本語/重み.safetensors']);
      expect(keysOf(await store.list(''))).toHaveLength(keys.length);
      await store.delete('emoji/😀.bin');
      expect(keysOf(await store.list('emoji/'))).toEqual(['emoji/\uFF5E.bin']);
    });
  });
}

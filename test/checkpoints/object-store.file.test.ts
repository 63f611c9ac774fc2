// The object-store conformance suite on the file:// store, plus what only a file store has:
// staging files, kill -9 mid-put, key/directory conflicts, URL handling of openObjectStore.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileObjectStore, STAGING_DIR } from '../../src/checkpoints/object-store/file.js';
import {
  fileUrlToRoot,
  ObjectStoreError,
  openObjectStore,
} from '../../src/checkpoints/object-store/index.js';
import {
  chunked,
  expectStoreError,
  objectStoreConformance,
  pseudoRandomBytes,
} from './object-store.suite.js';

let base: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'temper-object-store-'));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

objectStoreConformance('file://', (name) => openObjectStore(pathToFileURL(join(base, name)).href), {
  scheme: 'file',
});

// The same suite with fsync off (the fast mode) to keep both code paths honest on the basics.
objectStoreConformance(
  'file:// (fsync off)',
  (name) => openObjectStore(join(base, `nofsync-${name}`), { file: { fsync: false } }),
  {
    scheme: 'file',
  },
);

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

describe('file:// store specifics', () => {
  it('stores objects as plain files under the root and leaves no staging files', async () => {
    const root = join(base, 'plain');
    const store = new FileObjectStore(root);
    await store.put('a/b/c.bin', Buffer.from([1, 2, 3]));
    await store.put('a/big', chunked(pseudoRandomBytes(3 * 1024 * 1024, 'plain')), {
      ifAbsent: true,
    });
    await expectStoreError(store.put('a/big', 'again', { ifAbsent: true }), 'already_exists');
    await expect(
      store.put(
        'a/broken',
        chunked(Buffer.alloc(10)).map(() => {
          throw new Error('boom');
        }),
      ),
    ).rejects.toThrow('boom');
    expect(await filesUnder(root)).toEqual(expect.arrayContaining(['a/b/c.bin', 'a/big']));
    expect(await filesUnder(root)).toHaveLength(2);
    expect(await readdir(join(root, STAGING_DIR))).toEqual([]);
  });

  it('a writer killed with SIGKILL mid-put leaves nothing visible', async () => {
    const root = join(base, 'killed');
    const store = new FileObjectStore(root);
    await store.put('ckpt/previous/COMMIT', 'done');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        fileURLToPath(new URL('./object-store.kill-writer.ts', import.meta.url)),
        root,
        'ckpt/next/COMMIT',
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((resolvePromise, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('writing')) resolvePromise();
      });
      child.once('exit', (code) => reject(new Error(`writer exited early with ${code}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // The staging file is there, but no object is.
    expect((await readdir(join(root, STAGING_DIR))).length).toBe(1);
    expect(await store.stat('ckpt/next/COMMIT')).toBeNull();
    expect((await store.list('')).map((i) => i.key)).toEqual(['ckpt/previous/COMMIT']);
    // A sweep of recent staging files keeps them (a live writer may own one); an old one goes.
    expect(await store.sweepStaging()).toBe(0);
    expect(await store.sweepStaging(0)).toBe(1);
    expect(await readdir(join(root, STAGING_DIR))).toEqual([]);
    // And the key is still free for the next writer.
    await store.put('ckpt/next/COMMIT', 'retried', { ifAbsent: true });
    expect((await store.get('ckpt/next/COMMIT')).toString()).toBe('retried');
  });

  it("refuses a key that clashes with a directory of other keys (and 'x' under 'x/...')", async () => {
    const store = new FileObjectStore(join(base, 'clash'));
    await store.put('x/y', '1');
    await expectStoreError(store.put('x', '2'), 'invalid_key');
    await expectStoreError(store.put('x', '2', { ifAbsent: true }), 'invalid_key');
    await expectStoreError(store.put('x/y/z', '3'), 'invalid_key');
    expect((await store.list('')).map((i) => i.key)).toEqual(['x/y']);
    await store.delete('x'); // a directory, not an object: nothing to delete
    expect((await store.get('x/y')).toString()).toBe('1');
  });

  it('prunes directories that deletes leave empty, and a missing root is an empty store', async () => {
    const root = join(base, 'prune');
    const store = new FileObjectStore(root);
    expect(await store.list('')).toEqual([]);
    await expectStoreError(store.get('a'), 'not_found');
    await store.delete('a');
    await store.put('d1/d2/d3/obj', 'v');
    await store.put('d1/keep', 'v');
    await store.delete('d1/d2/d3/obj');
    await expect(stat(join(root, 'd1', 'd2'))).rejects.toThrow();
    expect((await stat(join(root, 'd1'))).isDirectory()).toBe(true);
  });

  it('puts and deletes racing in one directory all land', async () => {
    const store = new FileObjectStore(join(base, 'churn'), { fsync: false });
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        await store.put(`d/e/${i}`, String(i));
        if (i % 2 === 0) await store.delete(`d/e/${i}`);
      }),
    );
    expect((await store.list('d/')).length).toBe(20);
  });

  it('ignores files a person dropped in that no key can name', async () => {
    const root = join(base, 'foreign');
    const store = new FileObjectStore(root);
    await store.put('ok', 'v');
    await writeFile(join(root, 'back\\slash'), 'x');
    expect((await store.list('')).map((i) => i.key)).toEqual(['ok']);
  });
});

describe('openObjectStore URLs', () => {
  it('maps plain paths and file:// URLs, absolute and relative, to a file store', async () => {
    const cwd = '/srv/temper';
    const open = async (url: string) =>
      ((await openObjectStore(url, { cwd })) as FileObjectStore).root;
    expect(await open('/data/ckpts')).toBe('/data/ckpts');
    expect(await open('file:///data/ckpts')).toBe('/data/ckpts');
    expect(await open('file://localhost/data/ckpts/')).toBe('/data/ckpts');
    expect(await open('file:///data/with%20space')).toBe('/data/with space');
    expect(await open('ckpts')).toBe('/srv/temper/ckpts');
    expect(await open('./ckpts/../other')).toBe('/srv/temper/other');
    expect(await open('file://ckpts/run1')).toBe('/srv/temper/ckpts/run1');
    expect(await open('file://./ckpts')).toBe('/srv/temper/ckpts');
    expect(await open('file:ckpts')).toBe('/srv/temper/ckpts');
    expect(fileUrlToRoot('rel')).toBe(resolve('rel'));
    const store = await openObjectStore('file:///data/ckpts');
    expect(store.url).toBe('file:///data/ckpts');
  });

  it('opens s3:// and gs:// URLs, keeping the prefix', async () => {
    const s3 = await openObjectStore('s3://my-bucket/a/b/', {
      s3: { endpoint: 'http://127.0.0.1:1', region: 'us-east-1' },
    });
    expect(s3.url).toBe('s3://my-bucket/a/b');
    const gs = await openObjectStore('gs://my-bucket', {
      gcs: { apiEndpoint: 'http://127.0.0.1:1' },
    });
    expect(gs.url).toBe('gs://my-bucket');
  });

  it('refuses unknown schemes and malformed URLs with a clear error', async () => {
    const bad: [string, RegExp][] = [
      ['http://example.com/x', /unknown object store scheme 'http:'.*file:\/\/.*s3:\/\/.*gs:\/\//],
      ['azure://container/x', /unknown object store scheme 'azure:'/],
      ['', /empty/],
      ['file://', /no directory/],
      ['file:///bad%zz', /percent-encoding/],
      ['s3://', /bucket '' must be/],
      ['s3:/bucket', /expected s3:\/\/bucket/],
      ['s3://Bad_Bucket!/x', /bucket 'Bad_Bucket!'/],
      ['s3://bucket/a/../b', /'\.\.' segment/],
      ['s3://bucket/x?region=eu', /no query/],
      ['gs://b/x', /bucket 'b' must be/],
      ['gs://bucket//x', /segment/],
    ];
    for (const [url, message] of bad) {
      const e = await openObjectStore(url).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e, url).toBeInstanceOf(ObjectStoreError);
      expect((e as ObjectStoreError).code, url).toBe('invalid_key');
      expect((e as ObjectStoreError).message, url).toMatch(message);
    }
  });
});

// arc_v2 deltas: Adler-32, XOR, zstd frames, tensor and file deltas, delta chains and
// incremental snapshots (directory and object store), with the errors bad input must give.
// The byte compatibility with the reference implementation is deltas.reference.test.ts.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { deflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '../../src/checkpoints/dcp/errors.js';
import {
  adler32,
  applyDeltaFile,
  applyDeltaFileAsync,
  applyDeltaFileToPath,
  applyDeltaSnapshot,
  applyTensorDelta,
  DELTA_MANIFEST,
  dirSnapshot,
  encodeDeltaFile,
  encodeDeltaFileAsync,
  encodeDeltaFileFromPaths,
  encodeTensorDelta,
  incrementalSnapshotMetadata,
  parseRawSafetensors,
  readDeltaManifest,
  serializeU8Safetensors,
  storeSnapshot,
  writeDeltaSnapshot,
  xorAdler32,
  xorAdler32Portable,
  xorBytes,
  zstdCompress,
  zstdDecompress,
} from '../../src/checkpoints/deltas/index.js';
import { frameContentSize, withContentSize } from '../../src/checkpoints/deltas/zstd.js';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import { serializeSafetensors, type TensorMap } from '../../src/checkpoints/safetensors.js';
import { seededRandom as mulberry32 } from '../../src/util/seeded-random.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'temper-deltas-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** zlib's own Adler-32: the trailer of a zlib stream. */
function zlibAdler(bytes: Uint8Array): number {
  const z = deflateSync(bytes, { level: 0 });
  return z.readUInt32BE(z.length - 4);
}

function randomBytes(n: number, seed: number): Buffer {
  const rnd = mulberry32(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

/** A model-like weight map and the same weights after one AdamW-sized step (±lr). */
function weights(seed: number, step = 0, lr = 1e-5): TensorMap {
  const rnd = mulberry32(seed);
  const stepRnd = mulberry32(seed + 1000 * step + 1);
  const m: TensorMap = new Map();
  for (const [name, shape] of [
    ['model.embed_tokens.weight', [64, 32]],
    ['model.layers.0.mlp.up_proj.weight', [48, 32]],
    ['model.norm.weight', [32]],
  ] as const) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = name.endsWith('norm.weight') ? 1 : (rnd() - 0.5) * 0.1;
    for (let s = 0; s < step; s++)
      for (let i = 0; i < n; i++) data[i]! -= lr * (stepRnd() < 0.5 ? -1 : 1);
    m.set(name, { shape: [...shape], data });
  }
  return m;
}

describe('Adler-32', () => {
  it('matches zlib on empty, short, long and all-0xff inputs', () => {
    for (const b of [
      Buffer.alloc(0),
      Buffer.from('Wikipedia'),
      randomBytes(100_003, 1),
      Buffer.alloc(70_000, 0xff),
    ])
      expect(adler32(b)).toBe(zlibAdler(b));
    expect(adler32(Buffer.from('Wikipedia'))).toBe(0x11e60398);
    expect(adler32(Buffer.alloc(0))).toBe(1);
  });
});

describe('xorBytes', () => {
  it('agrees with a byte loop at every alignment, also in place', () => {
    const a = randomBytes(67, 2);
    const b = randomBytes(67, 3);
    for (let off = 0; off < 5; off++) {
      const n = 60;
      const out = new Uint8Array(n + off).subarray(off);
      xorBytes(out, a.subarray(off, off + n), b.subarray(1, 1 + n));
      for (let i = 0; i < n; i++) expect(out[i]).toBe(a[off + i]! ^ b[1 + i]!);
    }
    const c = Buffer.from(a);
    xorBytes(c, c, b);
    xorBytes(c, c, b);
    expect(c.equals(a)).toBe(true);
  });
});

describe('xorAdler32', () => {
  it('is xorBytes then adler32, at every alignment and length, also in place', () => {
    const a = randomBytes(20_011, 4);
    const b = randomBytes(20_011, 5);
    for (const n of [0, 1, 3, 15, 16, 17, 1388, 5553, 20_000])
      for (let off = 0; off < 4; off++)
        for (const bOff of [0, off, 3]) {
          const x = a.subarray(off, off + n);
          const y = b.subarray(bOff, bOff + n);
          const want = Buffer.alloc(n);
          xorBytes(want, x, y);
          const out = new Uint8Array(n + off).subarray(off);
          expect(xorAdler32(out, x, y)).toBe(adler32(want));
          expect(Buffer.from(out).equals(want)).toBe(true);
        }
    const c = Buffer.from(a);
    expect(xorAdler32(c, c, b)).toBe(adler32(c));
    xorBytes(c, c, b);
    expect(c.equals(a)).toBe(true);
  });

  it('the SIMD kernel and the portable loop agree on long inputs (several kernel chunks)', () => {
    const n = 3 * 32768 + 4099;
    const a = randomBytes(n + 3, 6);
    const b = randomBytes(n + 3, 7);
    for (const off of [0, 1, 3]) {
      const x = a.subarray(off, off + n);
      const y = b.subarray(3 - off, 3 - off + n);
      const o1 = Buffer.alloc(n);
      const o2 = Buffer.alloc(n);
      expect(xorAdler32(o1, x, y)).toBe(xorAdler32Portable(o2, x, y));
      expect(o1.equals(o2)).toBe(true);
      expect(xorAdler32Portable(o2, x, y)).toBe(zlibAdler(o2));
    }
  });
});

describe('zstd frames', () => {
  it('carry their content size and round-trip', () => {
    for (const n of [0, 1, 300, 200_000]) {
      const data = randomBytes(n, n);
      const frame = zstdCompress(data);
      expect(frameContentSize(frame)).toBe(n);
      expect(zstdDecompress(frame, n).equals(data)).toBe(true);
    }
  });
  it('adds a content size to a frame without one, and refuses wrong sizes', () => {
    // The binding's streaming output for 200 kB of zeros has no content size.
    const data = Buffer.alloc(200_000);
    const frame = zstdCompress(data);
    const head = Buffer.from(frame);
    expect(() => withContentSize(head, 5)).toThrow(/declares 200000 bytes, expected 5/);
    expect(() => zstdDecompress(frame, 199_999)).toThrow(/declares 200000 bytes, expected 199999/);
    expect(() => zstdDecompress(Buffer.from('not a frame at all'), 3)).toThrow(/bad magic/);
  });
});

describe('tensor deltas', () => {
  it('reconstruct bitwise and verify the checksum of the new bytes', () => {
    const prev = randomBytes(4096, 5);
    const next = Buffer.from(prev);
    next[17] = next[17]! ^ 1;
    next[4000] = next[4000]! ^ 0x80;
    const d = encodeTensorDelta(prev, next);
    expect(d.checksum).toBe(String(zlibAdler(next)));
    expect(d.payload.length).toBeLessThan(100);
    expect(Buffer.from(applyTensorDelta(prev, d.payload, d.checksum)).equals(next)).toBe(true);
    expect(() => applyTensorDelta(prev, d.payload, String(zlibAdler(prev)))).toThrow(
      /checksum mismatch/,
    );
  });
  it('handle empty tensors', () => {
    const d = encodeTensorDelta(new Uint8Array(0), new Uint8Array(0));
    expect(d.checksum).toBe('1');
    expect(applyTensorDelta(new Uint8Array(0), d.payload, '1').length).toBe(0);
  });
});

describe('delta files', () => {
  const f32 = (step: number) =>
    serializeSafetensors(weights(7, step), { metadata: { format: 'pt' } });
  const bf16 = (step: number) =>
    serializeSafetensors(weights(7, step), { dtype: 'BF16', metadata: { format: 'pt' } });

  it('are safetensors files of U8 payloads named like the tensors, with checksums as metadata', () => {
    const { file, checksums } = encodeDeltaFile(f32(0), f32(1));
    const st = parseRawSafetensors(file, 'delta');
    expect(st.entries.map((e) => e.name)).toEqual([
      'model.embed_tokens.weight',
      'model.layers.0.mlp.up_proj.weight',
      'model.norm.weight',
    ]);
    for (const e of st.entries) expect(e.dtype).toBe('U8');
    expect(st.metadata).toEqual(checksums);
    expect(st.dataStart % 8).toBe(0);
  });

  it('reconstruct the new file bitwise (float32 and bfloat16), and a chain base→d1→d2 too', () => {
    for (const make of [f32, bf16]) {
      const [s0, s1, s2] = [make(0), make(1), make(2)];
      const d1 = encodeDeltaFile(s0, s1).file;
      const d2 = encodeDeltaFile(s1, s2).file;
      expect(d1.length).toBeLessThan(s1.length);
      const r1 = applyDeltaFile(s0, d1);
      expect(r1.equals(s1)).toBe(true);
      expect(applyDeltaFile(r1, d2).equals(s2)).toBe(true);
      expect(s0.equals(make(0))).toBe(true); // not in place unless asked
    }
  });

  it('encode and apply the same bytes on the thread pool', async () => {
    for (const make of [f32, bf16]) {
      const [s0, s1] = [make(0), make(1)];
      const sync = encodeDeltaFile(s0, s1).file;
      const pooled = (await encodeDeltaFileAsync(s0, s1, { concurrency: 3 })).file;
      expect(pooled.equals(sync)).toBe(true);
      expect((await applyDeltaFileAsync(s0, pooled)).equals(s1)).toBe(true);
      expect(s0.equals(make(0))).toBe(true);
      const bad = Buffer.from(sync);
      bad[bad.length - 3]! ^= 0x10;
      await expect(
        applyDeltaFileAsync(s0, bad, { deltaSource: 'x.safetensors' }),
      ).rejects.toMatchObject({
        code: 'corrupt',
        file: 'x.safetensors',
      });
    }
  });

  it('apply into a separate buffer, leaving the previous file as it was even when corrupt', async () => {
    for (const make of [f32, bf16]) {
      const [s0, s1] = [make(0), make(1)];
      const delta = encodeDeltaFile(s0, s1).file;
      const into = Buffer.alloc(s0.length, 0xaa);
      expect(await applyDeltaFileAsync(s0, delta, { into })).toBe(into);
      expect(into.equals(s1)).toBe(true);
      expect(s0.equals(make(0))).toBe(true);
      const bad = Buffer.from(delta);
      bad[bad.length - 3]! ^= 0x10;
      await expect(applyDeltaFileAsync(s0, bad, { into })).rejects.toMatchObject({
        code: 'corrupt',
      });
      expect(s0.equals(make(0))).toBe(true);
      await expect(applyDeltaFileAsync(s0, delta, { into: Buffer.alloc(3) })).rejects.toThrow(
        /into has 3 bytes/,
      );
    }
  });

  it('encode and apply the same bytes from files on disk, one tensor at a time', async () => {
    const p0 = join(work, 'disk-0.safetensors');
    const p1 = join(work, 'disk-1.safetensors');
    await writeFile(p0, bf16(0));
    await writeFile(p1, bf16(1));
    const delta = (await encodeDeltaFileFromPaths(p0, p1)).file;
    expect(delta.equals(encodeDeltaFile(bf16(0), bf16(1)).file)).toBe(true);
    const out = join(work, 'disk-out.safetensors');
    await applyDeltaFileToPath(p0, delta, out);
    expect((await readFile(out)).equals(bf16(1))).toBe(true);
    // A failed apply leaves the output as it was and no temporary file behind.
    await writeFile(out, 'previous content');
    await expect(
      applyDeltaFileToPath(join(work, 'disk-1.safetensors'), delta, out, { deltaSource: 'd' }),
    ).rejects.toMatchObject({
      code: 'corrupt',
      message: expect.stringMatching(/checksum mismatch/),
    });
    expect(await readFile(out, 'utf8')).toBe('previous content');
    expect((await readdir(work)).filter((f) => f.includes('.tmp-'))).toEqual([]);
    await writeFile(p1, bf16(1).subarray(0, 100));
    await expect(encodeDeltaFileFromPaths(p0, p1)).rejects.toMatchObject({
      code: 'corrupt',
      file: p1,
    });
  });

  it('refuse different tensors, dtypes, shapes and headers with a clear error', () => {
    const other = weights(7, 0);
    other.delete('model.norm.weight');
    expect(() =>
      encodeDeltaFile(f32(0), serializeSafetensors(other, { metadata: { format: 'pt' } })),
    ).toThrow(/hold different tensors.*only in the previous: model.norm.weight.*full snapshot/);
    expect(() => encodeDeltaFile(f32(0), bf16(1))).toThrow(
      /is BF16\[64,32\] in new file but F32\[64,32\].*full snapshot/,
    );
    const otherMeta = serializeSafetensors(weights(7, 1), {
      metadata: { format: 'pt', step: '1' },
    });
    expect(() => encodeDeltaFile(f32(0), otherMeta)).toThrow(/different safetensors header/);
    // Without exactFile the tensors still reconstruct (in the previous file's layout).
    const loose = encodeDeltaFile(f32(0), otherMeta, { exactFile: false }).file;
    expect(applyDeltaFile(f32(0), loose).equals(f32(1))).toBe(true);
  });

  it('name the file and tensor when a delta is corrupt, truncated or for another base', () => {
    const base = f32(0);
    const delta = encodeDeltaFile(base, f32(1)).file;
    const st = parseRawSafetensors(delta, 'd');
    const flipped = Buffer.from(delta);
    const e = st.byName.get('model.layers.0.mlp.up_proj.weight')!;
    flipped[st.dataStart + e.end - 6]! ^= 0x55;
    const opts = { deltaSource: 'snap/model.safetensors' };
    const err = (() => {
      try {
        applyDeltaFile(base, flipped, opts);
      } catch (x) {
        return x as CheckpointError;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err?.code).toBe('corrupt');
    expect(err?.file).toBe('snap/model.safetensors');
    expect(err?.message).toMatch(
      /snap\/model.safetensors: tensor 'model.layers.0.mlp.up_proj.weight'/,
    );
    expect(() => applyDeltaFile(base, delta.subarray(0, delta.length - 10), opts)).toThrow(
      /snap\/model.safetensors: .*truncated/,
    );
    // Applied to the wrong base: the checksum catches it.
    expect(() => applyDeltaFile(f32(3), delta, opts)).toThrow(/checksum mismatch/);
    // A checksum missing from the metadata.
    const payloads = new Map(
      st.entries.map((x) => [x.name, delta.subarray(st.dataStart + x.begin, st.dataStart + x.end)]),
    );
    const noSums = serializeU8Safetensors(payloads, {});
    expect(() => applyDeltaFile(base, noSums, opts)).toThrow(/no alder32 checksum for tensor/);
  });
});

describe('incremental snapshots', () => {
  async function fullSnapshot(dir: string, step: number): Promise<void> {
    await rm(dir, { recursive: true, force: true });
    await (await import('node:fs/promises')).mkdir(dir, { recursive: true });
    const w = weights(11, step);
    const first = new Map([...w].slice(0, 2));
    const second = new Map([...w].slice(2));
    await writeFile(join(dir, 'config.json'), JSON.stringify({ model_type: 'qwen3', step }));
    await writeFile(
      join(dir, 'model-00001-of-00002.safetensors'),
      serializeSafetensors(first, { dtype: 'BF16' }),
    );
    await writeFile(
      join(dir, 'model-00002-of-00002.safetensors'),
      serializeSafetensors(second, { dtype: 'BF16' }),
    );
    await writeFile(join(dir, 'temper_export.json'), '{"format":"temper-export"}');
  }

  it('write deltas for weights, copy the rest, commit last, and reconstruct exactly (directory)', async () => {
    const s0 = join(work, 'snap-0');
    const s1 = join(work, 'snap-1');
    await fullSnapshot(s0, 0);
    await fullSnapshot(s1, 1);
    const deltaDir = join(work, 'delta-1');
    const manifest = await writeDeltaSnapshot({
      previous: dirSnapshot(s0),
      next: dirSnapshot(s1),
      previousSnapshotIdentity: 'snap-0',
      target: { dir: deltaDir },
    });
    expect(incrementalSnapshotMetadata(manifest)).toEqual({
      previous_snapshot_identity: 'snap-0',
      compression_format: 'arc_v2',
      checksum_format: 'alder32',
    });
    expect((await readdir(deltaDir)).sort()).toEqual([
      'config.json',
      DELTA_MANIFEST,
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
    expect(await readFile(join(deltaDir, 'config.json'), 'utf8')).toContain('"step":1');
    expect(manifest.files.filter((f) => f.delta).map((f) => f.path)).toEqual([
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
    const out = join(work, 'rebuilt-1');
    await applyDeltaSnapshot({
      base: dirSnapshot(s0),
      delta: dirSnapshot(deltaDir),
      target: { dir: out },
    });
    for (const f of [
      'config.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ])
      expect((await readFile(join(out, f))).equals(await readFile(join(s1, f)))).toBe(true);
  });

  it('work in an object store, are invisible until committed, and refuse a missing weights file', async () => {
    const store = await openObjectStore(pathToFileURL(join(work, 'store')).href);
    const s0 = join(work, 'snap-a');
    const s1 = join(work, 'snap-b');
    await fullSnapshot(s0, 0);
    await fullSnapshot(s1, 3);
    for (const f of await readdir(s0)) await store.put(`snaps/a/${f}`, await readFile(join(s0, f)));
    await writeDeltaSnapshot({
      previous: storeSnapshot(store, 'snaps/a'),
      next: dirSnapshot(s1),
      previousSnapshotIdentity: 'a',
      target: { store, prefix: 'snaps/b' },
      ttlSeconds: 60,
    });
    const m = await readDeltaManifest(storeSnapshot(store, 'snaps/b'));
    expect(m?.expireTime).not.toBeNull();
    await expect(
      writeDeltaSnapshot({
        previous: storeSnapshot(store, 'snaps/a'),
        next: dirSnapshot(s1),
        previousSnapshotIdentity: 'a',
        target: { store, prefix: 'snaps/b' },
      }),
    ).rejects.toMatchObject({ code: 'already_exists' });
    const out = join(work, 'rebuilt-b');
    await applyDeltaSnapshot({
      base: storeSnapshot(store, 'snaps/a'),
      delta: storeSnapshot(store, 'snaps/b'),
      target: { dir: out },
    });
    expect(
      (await readFile(join(out, 'model-00002-of-00002.safetensors'))).equals(
        await readFile(join(s1, 'model-00002-of-00002.safetensors')),
      ),
    ).toBe(true);

    // The previous snapshot lacks a shard: incompatible, nothing written.
    await store.delete('snaps/a/model-00002-of-00002.safetensors');
    await expect(
      writeDeltaSnapshot({
        previous: storeSnapshot(store, 'snaps/a'),
        next: dirSnapshot(s1),
        previousSnapshotIdentity: 'a',
        target: { store, prefix: 'snaps/c' },
      }),
    ).rejects.toThrow(
      /has no model-00002-of-00002.safetensors to take a delta against: write a full snapshot/,
    );
    expect(await store.list('snaps/c/')).toEqual([]);
    // Identities are one path segment.
    await expect(
      writeDeltaSnapshot({
        previous: dirSnapshot(s0),
        next: dirSnapshot(s1),
        previousSnapshotIdentity: '../x',
        target: { dir: join(work, 'x') },
      }),
    ).rejects.toMatchObject({ code: 'invalid_name' });
  });

  it('refuse to apply a tampered delta or the wrong base, naming the file, and leave no output', async () => {
    const s0 = join(work, 'snap-t0');
    const s1 = join(work, 'snap-t1');
    const s2 = join(work, 'snap-t2');
    await fullSnapshot(s0, 0);
    await fullSnapshot(s1, 1);
    await fullSnapshot(s2, 5);
    const deltaDir = join(work, 'delta-t');
    await writeDeltaSnapshot({
      previous: dirSnapshot(s0),
      next: dirSnapshot(s1),
      previousSnapshotIdentity: 'snap-t0',
      target: { dir: deltaDir },
    });
    const out = join(work, 'rebuilt-t');
    await expect(
      applyDeltaSnapshot({
        base: dirSnapshot(s2),
        delta: dirSnapshot(deltaDir),
        target: { dir: out },
      }),
    ).rejects.toMatchObject({
      code: 'corrupt',
      file: expect.stringContaining('model-00001-of-00002.safetensors'),
    });
    const shard = join(deltaDir, 'model-00002-of-00002.safetensors');
    const bytes = await readFile(shard);
    await writeFile(shard, bytes.subarray(0, bytes.length - 1));
    await expect(
      applyDeltaSnapshot({
        base: dirSnapshot(s0),
        delta: dirSnapshot(deltaDir),
        target: { dir: out },
      }),
    ).rejects.toThrow(
      /model-00002-of-00002.safetensors has \d+ bytes, expected \d+ \(truncated\?\)/,
    );
    await expect(readdir(out)).rejects.toThrow();
  });
});

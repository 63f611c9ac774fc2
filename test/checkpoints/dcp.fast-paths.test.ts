// The file:// fast paths of DCP checkpoints: shard writes through FileObjectStore.putPieces
// (synchronous writes, checksummed as written, background flushes, staged and renamed), large
// loads split across read workers with CRC-32s joined by crc32Combine, and the guarantees
// they must keep: atomic puts, checksum failures that name the file, a responsive event loop.
import { readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32Combine } from '../../src/checkpoints/dcp/checksum.js';
import {
  CheckpointError,
  DcpCheckpoints,
  loadTrainState,
  saveTrainState,
} from '../../src/checkpoints/dcp/index.js';
import { readWorkerLimit } from '../../src/checkpoints/dcp/read-workers.js';
import { STAGING_DIR } from '../../src/checkpoints/object-store/file.js';
import type { Tensor } from '../../src/checkpoints/safetensors.js';
import { randomSequences, tinyModel } from '../engine/helpers.js';
import { randomData, tempStore } from './helpers.js';
import { expectStoreError, pseudoRandomBytes } from './object-store.suite.js';

/** ~72 MB of float32: past the 64 MiB at which a load splits a shard with read workers. */
function largeState(): Map<string, Tensor> {
  return new Map([
    ['weights/big', { shape: [4096, 4096], data: randomData(4096 * 4096, 21) }],
    ['weights/small', { shape: [1000], data: randomData(1000, 22) }],
    ['optim/big/exp_avg', { shape: [1024, 1024], data: randomData(1024 * 1024, 23) }],
  ]);
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

async function expectCorrupt(p: Promise<unknown>, file: string, message: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  expect((err as CheckpointError).code).toBe('corrupt');
  expect((err as CheckpointError).file).toBe(file);
  expect((err as Error).message).toContain(file);
  expect((err as Error).message).toMatch(message);
}

/** Flips one bit of a file at `offset` (negative: from the end). */
function flipByte(path: string, offset: number): void {
  const bytes = readFileSync(path);
  const at = offset < 0 ? bytes.length + offset : offset;
  bytes[at] = bytes[at]! ^ 0x10;
  writeFileSync(path, bytes);
}

describe('crc32Combine', () => {
  it('joins the CRC-32s of two parts into the CRC-32 of the whole, for any split', () => {
    const data = pseudoRandomBytes(70_000, 'combine');
    for (const cut of [0, 1, 7, 4096, 33_333, 69_999, 70_000]) {
      const a = data.subarray(0, cut);
      const b = data.subarray(cut);
      expect(crc32Combine(crc32(a), crc32(b), b.length), `cut ${cut}`).toBe(crc32(data));
    }
    // Lengths past 2^32 bits of zeros stay exact (no 32-bit shifts of the length).
    const zeros = Buffer.alloc(1 << 20);
    let whole = crc32(Buffer.from('head'));
    for (let i = 0; i < 5; i++) whole = crc32(zeros, whole);
    expect(crc32Combine(crc32(Buffer.from('head')), crc32(Buffer.alloc(5 << 20)), 5 << 20)).toBe(
      whole,
    );
  });
});

describe('FileObjectStore.putPieces', () => {
  it('writes the pieces in order, shows each written byte to onWritten, and commits atomically', async () => {
    const store = await tempStore();
    // 40 MB: several pieces, yields to the event loop and a background flush on the way.
    const floats = randomData(10 << 20, 31);
    const body = Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength);
    const pieces = [body.subarray(0, 5), body.subarray(5, 3 << 20), body.subarray(3 << 20)];
    let seen = 0;
    let running = crc32(Buffer.alloc(0));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const info = await store.putPieces('a/obj', pieces, {
      ifAbsent: true,
      onWritten: (piece) => {
        running = crc32(piece, running);
        seen += piece.byteLength;
      },
    });
    clearInterval(timer);
    expect(info.size).toBe(body.length);
    expect(seen).toBe(body.length);
    expect(running).toBe(crc32(body));
    expect((await store.get('a/obj')).equals(body)).toBe(true);
    expect(ticks, 'timers ran while 40 MB were written').toBeGreaterThan(0);
    await expectStoreError(
      store.putPieces('a/obj', [Buffer.from('x')], { ifAbsent: true }),
      'already_exists',
    );
    expect(readdirSync(join(store.root, STAGING_DIR))).toEqual([]);
  });

  it('takes async iterables, and a failing one leaves neither an object nor a staging file', async () => {
    const store = await tempStore();
    async function* slow() {
      yield Buffer.from('hello ');
      await new Promise((r) => setTimeout(r, 5));
      yield Buffer.from('world');
    }
    await store.putPieces('ok', slow());
    expect((await store.get('ok')).toString()).toBe('hello world');
    function* broken() {
      yield Buffer.alloc(1 << 20, 1);
      throw new Error('producer failed');
    }
    await expect(store.putPieces('bad', broken())).rejects.toThrow('producer failed');
    expect(await store.stat('bad')).toBeNull();
    expect(readdirSync(join(store.root, STAGING_DIR))).toEqual([]);
  });
});

describe('DCP file:// fast paths', () => {
  it('saves through putPieces and loads a large shard bitwise, with and without read workers', async () => {
    const store = await tempStore();
    const state = largeState();
    const meta = await new DcpCheckpoints(store).save('big', { tensors: state, step: 3 });
    const path = join(store.root, 'big', meta.files[0]!.path);
    const onDisk = readFileSync(path);
    expect(meta.files[0]!.checksum).toBe(
      `crc32:${(crc32(onDisk) >>> 0).toString(16).padStart(8, '0')}`,
    );
    expect(meta.files[0]!.size).toBe(statSync(path).size);
    for (const readWorkers of [undefined, 0]) {
      const loaded = await new DcpCheckpoints(store, { readWorkers }).load('big');
      for (const [key, t] of state)
        expect(sameBits(loaded.tensors.get(key)!.data, t.data), key).toBe(true);
      // Shared memory (what workers fill) exactly when workers may be used.
      const shared = readWorkers !== 0 && readWorkerLimit() > 0;
      const buffer = loaded.tensors.get('weights/big')!.data.buffer;
      expect(buffer instanceof SharedArrayBuffer).toBe(shared);
    }
  });

  it('names the file when the part read on this thread or by a worker fails its checksum', async () => {
    const store = await tempStore();
    const ckpts = new DcpCheckpoints(store);
    for (const [name, offset] of [
      ['early', 4096], // the calling thread's part
      ['late', -4], // the last worker's part (or this thread's without workers)
    ] as const) {
      const meta = await ckpts.save(name, { tensors: largeState(), step: 1 });
      const file = meta.files[0]!.path;
      flipByte(join(store.root, name, file), offset);
      await expectCorrupt(ckpts.load(name), file, /fails its checksum \(crc32:/);
      // Bytes the caller does not want are still checked (a selective load reads the gaps).
      await expectCorrupt(
        ckpts.load(name, { select: (k) => k === 'weights/small' }),
        file,
        /fails its checksum/,
      );
    }
    // Workers stay usable after a failed load.
    const meta = await ckpts.save('fine', { tensors: largeState(), step: 2 });
    expect((await ckpts.load('fine')).metadata.files).toEqual(meta.files);
  });

  it('detects a truncated large shard before reading it', async () => {
    const store = await tempStore();
    const ckpts = new DcpCheckpoints(store);
    const meta = await ckpts.save('cut', { tensors: largeState(), step: 1 });
    const file = meta.files[0]!.path;
    const path = join(store.root, 'cut', file);
    truncateSync(path, statSync(path).size - 1);
    await expectCorrupt(ckpts.load('cut'), file, /truncated/);
  });

  it('keeps sha256 files on one thread and still verifies them', async () => {
    const store = await tempStore();
    const ckpts = new DcpCheckpoints(store);
    const state = largeState();
    const meta = await ckpts.save('sha', { tensors: state, step: 1, checksum: 'sha256' });
    const loaded = await ckpts.load('sha');
    expect(sameBits(loaded.tensors.get('weights/big')!.data, state.get('weights/big')!.data)).toBe(
      true,
    );
    flipByte(join(store.root, 'sha', meta.files[0]!.path), -4);
    await expectCorrupt(ckpts.load('sha'), meta.files[0]!.path, /fails its checksum \(sha256:/);
  });

  it('resumes a model from a train state large enough for read workers, bitwise', async () => {
    // ~6.3M parameters: weights + two moments are ~75 MB, so the load goes through workers.
    const config = {
      vocabSize: 272,
      hiddenSize: 512,
      intermediateSize: 1536,
      numLayers: 2,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 64,
    };
    const a = tinyModel({ seed: 5, config });
    const batch = randomSequences(7, [16, 9], config.vocabSize);
    a.forwardBackwardCrossEntropy(batch, new Array(25).fill(1 / 25));
    a.optimStep({ learningRate: 1e-3 });
    const store = await tempStore();
    await saveTrainState(a, store, 'big-state');
    const b = tinyModel({ seed: 6, config });
    await loadTrainState(b, store, 'big-state');
    expect(b.step).toBe(1);
    for (const name of a.tensorInfo().map((t) => t.name)) {
      expect(sameBits(b.getTensor(name), a.getTensor(name)), name).toBe(true);
      const ma = a.getOptimizerState(name)!;
      const mb = b.getOptimizerState(name)!;
      expect(sameBits(mb.m, ma.m) && sameBits(mb.v, ma.v), `${name} moments`).toBe(true);
    }
  });
});

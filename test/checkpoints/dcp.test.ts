import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  CheckpointError,
  DcpCheckpoints,
  type DcpMetadata,
  loadTrainState,
  METADATA_FILE,
  partitionRange,
  saveTrainState,
} from '../../src/checkpoints/dcp/index.js';
import { STAGING_DIR } from '../../src/checkpoints/object-store/file.js';
import type { Tensor } from '../../src/checkpoints/safetensors.js';
import { parseSafetensors } from '../../src/checkpoints/safetensors.js';
import { randomSequences, tinyModel } from '../engine/helpers.js';
import { opaque, randomData, tempStore } from './helpers.js';
import { stateA } from './slow-writer.js';

function sampleState(): Map<string, Tensor> {
  return new Map([
    ['weights/embed', { shape: [37, 24], data: randomData(37 * 24, 11) }],
    ['weights/norm', { shape: [24], data: randomData(24, 12) }],
    ['weights/odd', { shape: [7], data: randomData(7, 13) }],
    ['weights/one', { shape: [1], data: randomData(1, 14) }],
    ['weights/empty', { shape: [0, 5], data: new Float32Array(0) }],
    ['optim/embed/exp_avg', { shape: [37, 24], data: randomData(37 * 24, 15) }],
  ]);
}

async function expectCode(
  p: Promise<unknown>,
  code: string,
  message?: RegExp,
): Promise<CheckpointError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  expect((err as CheckpointError).code).toBe(code);
  if (message) expect((err as Error).message).toMatch(message);
  return err as CheckpointError;
}

function expectSameTensors(
  a: Map<string, Tensor>,
  b: Map<string, { shape: number[]; data: Float32Array }>,
) {
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [k, t] of a) {
    expect(b.get(k)!.shape, k).toEqual(t.shape);
    expect(
      Buffer.from(
        b.get(k)!.data.buffer,
        b.get(k)!.data.byteOffset,
        b.get(k)!.data.byteLength,
      ).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
      k,
    ).toBe(true);
  }
}

describe('partitionRange', () => {
  it('tiles every flat range contiguously with sizes differing by at most one', () => {
    for (const n of [0, 1, 2, 5, 7, 64, 1001])
      for (const R of [1, 2, 3, 4, 8, 13]) {
        let at = 0;
        const sizes: number[] = [];
        for (let r = 0; r < R; r++) {
          const { start, end } = partitionRange(n, r, R);
          expect(start).toBe(at);
          sizes.push(end - start);
          at = end;
        }
        expect(at).toBe(n);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      }
  });
  it('rejects bad ranks and world sizes', () => {
    expect(() => partitionRange(10, 2, 2)).toThrow(/rank/);
    expect(() => partitionRange(10, 0, 0)).toThrow(/world size/);
    expect(() => partitionRange(-1, 0, 1)).toThrow(/element count/);
  });
});

/** Loads through the file:// fast path (positioned reads) and through plain streams. */
const PATHS = ['file', 'stream'] as const;

describe('DCP checkpoints', () => {
  it('round-trips tensors, step and state with per-file checksums in the metadata', async () => {
    const store = await tempStore();
    const ckpts = new DcpCheckpoints(store, { prefix: 'jobs/j1/dcp' });
    const state = sampleState();
    const meta = await ckpts.save('step-3', {
      tensors: state,
      step: 3,
      worldSize: 2,
      state: { dataCursor: { epoch: 1, offset: 42 }, rng: [1, 2, 3] },
    });
    expect(meta.files.map((f) => f.rank)).toEqual([0, 1]);
    for (const f of meta.files) {
      expect(f.path).toMatch(/^data-[a-z0-9]+\/rank-0000[01]-of-00002\.safetensors$/);
      expect(f.checksum).toMatch(/^crc32:[0-9a-f]{8}$/);
      const bytes = await store.get(`jobs/j1/dcp/step-3/${f.path}`);
      expect(bytes.length).toBe(f.size);
      // Shards are plain safetensors files of 1-D float32 slices.
      const parsed = parseSafetensors(bytes);
      expect(parsed.metadata.format).toBe('temper-dcp');
      for (const [key, t] of parsed.tensors) expect(t.shape.length, key).toBe(1);
    }
    const raw = JSON.parse(
      (await store.get(`jobs/j1/dcp/step-3/${METADATA_FILE}`)).toString(),
    ) as DcpMetadata;
    expect(raw).toMatchObject({
      format: 'temper-dcp',
      version: 1,
      name: 'step-3',
      step: 3,
      worldSize: 2,
      expireTime: null,
      checkpointType: 'TRAINING',
    });
    expect(raw.tensors['weights/odd']!.chunks.map((c) => [c.rank, c.flatRange])).toEqual([
      [0, [0, 4]],
      [1, [4, 7]],
    ]);
    expect(raw.tensors['weights/empty']!.chunks).toEqual([]);
    const back = await ckpts.load('step-3');
    expect(back.metadata.state).toEqual({ dataCursor: { epoch: 1, offset: 42 }, rng: [1, 2, 3] });
    expectSameTensors(state, back.tensors);
    expect((await ckpts.list()).map((m) => m.name)).toEqual(['step-3']);
    expect((await ckpts.latest())?.name).toBe('step-3');
  });

  it('records crc32 (default) or sha256 checksums that match the files', async () => {
    const store = await tempStore();
    const ckpts = new DcpCheckpoints(store);
    for (const checksum of ['crc32', 'sha256'] as const) {
      const meta = await ckpts.save(checksum, {
        tensors: sampleState(),
        step: 1,
        worldSize: 2,
        checksum,
      });
      for (const f of meta.files) {
        const bytes = await store.get(`${checksum}/${f.path}`);
        const want =
          checksum === 'sha256'
            ? `sha256:${createHash('sha256').update(bytes).digest('hex')}`
            : `crc32:${(crc32(bytes) >>> 0).toString(16).padStart(8, '0')}`;
        expect(f.checksum).toBe(want);
      }
      const file = join(store.root, checksum, meta.files[0]!.path);
      const bytes = readFileSync(file);
      bytes[100] = bytes[100]! ^ 0x80;
      writeFileSync(file, bytes);
      await expectCode(
        ckpts.load(checksum),
        'corrupt',
        new RegExp(`${meta.files[0]!.path} fails its checksum \\(${checksum}:`),
      );
    }
  });

  it.each(PATHS)('reshards 2→1, 1→2 and 3→2 ranks to identical tensors (%s)', async (path) => {
    const store = await tempStore();
    const ckpts = new DcpCheckpoints(path === 'stream' ? opaque(store) : store);
    const state = sampleState();
    for (const [from, to] of [
      [2, 1],
      [1, 2],
      [3, 2],
      [2, 3],
    ] as const) {
      const name = `r${from}-to-${to}`;
      await ckpts.save(name, { tensors: state, step: 1, worldSize: from });
      const joined = new Map<string, { shape: number[]; data: Float32Array }>();
      for (let r = 0; r < to; r++) {
        const part = await ckpts.load(name, { rank: r, worldSize: to });
        for (const [k, s] of part.tensors) {
          expect(s.range).toEqual(partitionRange(state.get(k)!.data.length, r, to));
          const cur = joined.get(k) ?? {
            shape: s.shape,
            data: new Float32Array(state.get(k)!.data.length),
          };
          cur.data.set(s.data, s.range.start);
          joined.set(k, cur);
        }
      }
      expectSameTensors(state, joined);
    }
    await expectCode(ckpts.load('r2-to-1', { rank: 2, worldSize: 2 }), 'invalid_argument');
  });

  it.each(PATHS)(
    'detects corrupted, truncated and missing shards by checksum and names the file (%s)',
    async (path) => {
      const store = await tempStore();
      const ckpts = new DcpCheckpoints(path === 'stream' ? opaque(store) : store);
      const state = sampleState();
      for (const name of ['flip', 'cut', 'gone'])
        await ckpts.save(name, { tensors: state, step: 1, worldSize: 2 });
      const fileOf = async (name: string, rank: number) =>
        (await ckpts.metadata(name)).files[rank]!.path;

      const flipped = join(store.root, 'flip', await fileOf('flip', 1));
      const bytes = readFileSync(flipped);
      bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x01;
      writeFileSync(flipped, bytes);
      const e1 = await expectCode(ckpts.load('flip'), 'corrupt', /checksum/);
      expect(e1.message).toContain(await fileOf('flip', 1));
      expect(e1.file).toBe(await fileOf('flip', 1));
      // A rank that does not read the damaged file still loads.
      await ckpts.load('flip', { rank: 0, worldSize: 2 });

      const cut = join(store.root, 'cut', await fileOf('cut', 0));
      truncateSync(cut, statSync(cut).size - 100);
      const e2 = await expectCode(ckpts.load('cut'), 'corrupt', /truncated/);
      expect(e2.message).toContain(await fileOf('cut', 0));

      await store.delete(`gone/${await fileOf('gone', 0)}`);
      const e3 = await expectCode(ckpts.load('gone'), 'corrupt', /missing/);
      expect(e3.message).toContain(await fileOf('gone', 0));
    },
  );

  it('refuses path traversal in names, prefixes and metadata', async () => {
    const store = await tempStore();
    const ckpts = new DcpCheckpoints(store);
    for (const bad of ['../x', 'a/b', '..', '.hidden', '', 'x\\y', 'a..b', '/abs'])
      await expectCode(ckpts.save(bad, { tensors: sampleState(), step: 0 }), 'invalid_name');
    await expectCode(ckpts.load('../etc'), 'invalid_name');
    expect(() => new DcpCheckpoints(store, { prefix: '../up' })).toThrow(CheckpointError);
    expect(() => new DcpCheckpoints(store, { prefix: 'a/./b' })).toThrow(/prefix/);
    expect(await store.list('')).toEqual([]);
    // A metadata file pointing outside its checkpoint is corrupt, not followed.
    await ckpts.save('ok', { tensors: sampleState(), step: 0 });
    const meta = JSON.parse((await store.get('ok/metadata.json')).toString()) as DcpMetadata;
    meta.files[0]!.path = '../other/rank-00000-of-00001.safetensors';
    await store.put('evil/metadata.json', JSON.stringify({ ...meta, name: 'evil' }));
    await expectCode(ckpts.load('evil'), 'corrupt', /malformed/);
    expect((await ckpts.list()).map((m) => m.name)).toEqual(['ok']);
  });

  it('refuses to overwrite a committed checkpoint and changes nothing', async () => {
    const store = await tempStore();
    const ckpts = new DcpCheckpoints(store);
    await ckpts.save('c', { tensors: sampleState(), step: 1 });
    const before = (await store.list('')).map((o) => o.key);
    await expectCode(ckpts.save('c', { tensors: sampleState(), step: 2 }), 'already_exists');
    expect((await store.list('')).map((o) => o.key)).toEqual(before);
    // The commit itself is if-absent: a writer that loses the race cleans up its shards.
    const shard = await ckpts.writeShard('c', ckpts.beginSave(), 0, 1, sampleState());
    await expectCode(
      ckpts.commit('c', { tensors: sampleState(), step: 2 }, [shard]),
      'already_exists',
    );
    expect((await store.list('')).map((o) => o.key)).toEqual(before);
  });

  it('hides uncommitted saves and garbage-collects them after the grace period', async () => {
    const store = await tempStore();
    const ckpts = new DcpCheckpoints(store);
    await ckpts.save('done', { tensors: sampleState(), step: 1 });
    const attempt = ckpts.beginSave();
    await ckpts.writeShard('half', attempt, 0, 2, sampleState());
    expect((await ckpts.list()).map((m) => m.name)).toEqual(['done']);
    await expectCode(ckpts.load('half'), 'not_found');
    expect((await ckpts.sweep()).collected).toEqual([]); // younger than the default grace
    expect((await store.list('half/')).length).toBe(1);
    const swept = await ckpts.sweep({ graceMs: 0 });
    expect(swept).toEqual({ deleted: [], collected: ['half'], objectsRemoved: 1 });
    expect(await store.list('half/')).toEqual([]);
    expect((await ckpts.load('done')).tensors.size).toBe(sampleState().size);
  });

  it('expires checkpoints with a TTL and sweeps them', async () => {
    const store = await tempStore();
    let now = new Date('2025-01-01T00:00:00Z');
    const ckpts = new DcpCheckpoints(store, { now: () => now });
    await ckpts.save('short', { tensors: sampleState(), step: 1, ttlSeconds: 60 });
    await ckpts.save('forever', { tensors: sampleState(), step: 2 });
    expect((await ckpts.metadata('short')).expireTime).toBe('2025-01-01T00:01:00.000Z');
    expect((await ckpts.list()).map((m) => m.name)).toEqual(['short', 'forever']);
    now = new Date('2025-01-01T00:01:00Z');
    expect((await ckpts.list()).map((m) => m.name)).toEqual(['forever']);
    await expectCode(ckpts.load('short'), 'not_found', /expired/);
    const swept = await ckpts.sweep();
    expect(swept.deleted).toEqual(['short']);
    expect(await store.list('short/')).toEqual([]);
    await expectCode(
      ckpts.save('x', { tensors: sampleState(), step: 1, ttlSeconds: 0 }),
      'invalid_argument',
    );
  });

  it('keeps the last K checkpoints', async () => {
    const store = await tempStore();
    let t = Date.parse('2025-01-01T00:00:00Z');
    const ckpts = new DcpCheckpoints(store, { keepLast: 2, now: () => new Date(t) });
    for (let s = 1; s <= 4; s++) {
      await ckpts.save(`step-${s}`, { tensors: sampleState(), step: s, worldSize: 2 });
      t += 1000;
    }
    expect((await ckpts.list()).map((m) => m.name)).toEqual(['step-3', 'step-4']);
    const names = new Set((await store.list('')).map((o) => o.key.split('/')[0]));
    expect([...names].sort()).toEqual(['step-3', 'step-4']);
    await ckpts.delete('step-3');
    expect((await ckpts.list()).map((m) => m.name)).toEqual(['step-4']);
    expect(await store.list('step-3/')).toEqual([]);
  });

  it('survives kill -9 of a writer mid-save: the previous checkpoint loads, the partial one is invisible and swept', async () => {
    const store = await tempStore();
    const script = join(import.meta.dirname, 'slow-writer.ts');
    const child = spawn('npx', ['tsx', script, store.root], {
      cwd: join(import.meta.dirname, '..', '..'),
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
    });
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => resolve(code)),
    );
    try {
      // Wait until ckpt-b has a finished shard on disk (a save well under way), then kill.
      const deadline = Date.now() + 60_000;
      for (;;) {
        if (Date.now() > deadline)
          throw new Error(`writer never got mid-save; stdout: ${out}; stderr: ${err}`);
        if (out.includes('committed ckpt-b'))
          throw new Error('writer finished before it could be killed');
        if (out.includes('saving ckpt-b') && (await store.list('ckpt-b/')).length > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const pid = Number(/pid (\d+)/.exec(out)?.[1]);
      process.kill(pid, 'SIGKILL');
    } finally {
      killGroup(child);
    }
    await exited;
    expect(out).not.toContain('committed ckpt-b');
    const partial = await store.list('ckpt-b/');
    expect(partial.length).toBeGreaterThan(0);
    expect(partial.some((o) => o.key.endsWith(METADATA_FILE))).toBe(false);
    // Shards appear whole or not at all: each listed one holds its 2 x 1 Mi floats, and the
    // one being written when the writer died is a staging file no listing shows.
    for (const o of partial) expect(o.size, o.key).toBeGreaterThan(2 * (1 << 20) * 4);
    expect(readdirSync(join(store.root, STAGING_DIR)).length).toBeLessThanOrEqual(1);
    await store.sweepStaging(0);
    expect(readdirSync(join(store.root, STAGING_DIR))).toEqual([]);

    const ckpts = new DcpCheckpoints(store);
    expect((await ckpts.list()).map((m) => m.name)).toEqual(['ckpt-a']);
    await expectCode(ckpts.load('ckpt-b'), 'not_found');
    const a = await ckpts.load('ckpt-a');
    expect(a.metadata.state).toEqual({ cursor: 7 });
    expectSameTensors(stateA(), a.tensors);
    const swept = await ckpts.sweep({ graceMs: 0 });
    expect(swept.collected).toEqual(['ckpt-b']);
    expect(await store.list('ckpt-b/')).toEqual([]);
    expectSameTensors(stateA(), (await ckpts.load('ckpt-a')).tensors);
  }, 90_000);
});

function killGroup(child: ChildProcess): void {
  try {
    if (child.pid) process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

describe('train state of a TransformerModel', () => {
  const adam = { learningRate: 1e-2, weightDecay: 0.01 };
  const batch = randomSequences(5, [6, 4]);
  const weights = batch.map((s) => s.tokens.map(() => 1));
  function train(model: ReturnType<typeof tinyModel>, steps: number): void {
    for (let i = 0; i < steps; i++) {
      model.forwardBackwardCrossEntropy(batch, weights.flat());
      model.optimStep(adam);
    }
  }
  function snapshot(model: ReturnType<typeof tinyModel>): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    for (const name of model.tensorInfo().map((t) => t.name)) out.set(name, model.getTensor(name));
    return out;
  }

  for (const lora of [undefined, { rank: 4, alpha: 8 }]) {
    it(`resumes ${lora ? 'a LoRA' : 'a full-parameter'} run bitwise (weights, moments, step, cursor)`, async () => {
      const store = await tempStore();
      const a = tinyModel({ seed: 3, lora });
      train(a, 2);
      const meta = await saveTrainState(a, store, 'step-2', {
        dataCursor: { offset: 2 },
        rng: { seed: 9, draws: 17 },
        hyperparameters: { learningRate: 1e-2 },
        worldSize: 2,
      });
      expect(meta.checkpointType).toBe(lora ? 'TRAINING_LORA' : 'TRAINING');
      if (lora) expect(Object.keys(meta.tensors).every((k) => k.includes('.lora_'))).toBe(true);
      const b = tinyModel({ seed: 3, lora }); // same base, fresh adapter/optimizer
      if (!lora) b.loadTensors(tinyModel({ seed: 99 }).namedTensors(), { partial: true });
      const loaded = await loadTrainState(b, store, 'step-2');
      expect(loaded).toMatchObject({
        step: 2,
        dataCursor: { offset: 2 },
        rng: { seed: 9, draws: 17 },
        hyperparameters: { learningRate: 1e-2 },
      });
      expect(b.step).toBe(2);
      for (const name of a.trainableNames()) {
        expect(b.getOptimizerState(name)).toEqual(a.getOptimizerState(name));
      }
      train(a, 2);
      train(b, 2);
      const sa = snapshot(a);
      const sb = snapshot(b);
      for (const [name, t] of sa)
        expect(Buffer.from(sb.get(name)!.buffer).equals(Buffer.from(t.buffer)), name).toBe(true);
    });
  }

  it('refuses a checkpoint from a different model and changes nothing', async () => {
    const store = await tempStore();
    const a = tinyModel({ seed: 3 });
    await saveTrainState(a, store, 'full');
    const lora = tinyModel({ seed: 3, lora: { rank: 2, alpha: 4 } });
    await expectCode(loadTrainState(lora, store, 'full'), 'incompatible', /adapter/);
    const wide = tinyModel({ seed: 3, config: { intermediateSize: 48 } });
    const before = snapshot(wide);
    await expectCode(loadTrainState(wide, store, 'full'), 'incompatible', /intermediateSize/);
    for (const [name, t] of snapshot(wide)) expect(t).toEqual(before.get(name));
  });
});

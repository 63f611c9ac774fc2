// arc_v2 snapshots encoded straight from weights in memory (memorySnapshot over an export's
// files, tensors as views) must be bitwise the snapshots encoded from the same export written
// to disk first (the trainer's former path): every stored file and the manifest, for the
// engine's own weights and for float32 / bfloat16 / sharded exports of a tensor map.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogModelDir } from '../../src/catalog/bundled.js';
import {
  applyDeltaSnapshot,
  dirSnapshot,
  encodeDeltaFileFromTensors,
  memorySnapshot,
  storeSnapshot,
  writeDeltaSnapshot,
} from '../../src/checkpoints/deltas/index.js';
import {
  exportHfModel,
  hfModelFiles,
  modelWeights,
  tensorMapWeights,
  writeExport,
} from '../../src/checkpoints/exports/index.js';
import { type ObjectStore, openObjectStore } from '../../src/checkpoints/object-store/index.js';
import type { TensorMap } from '../../src/checkpoints/safetensors.js';
import { TransformerModel } from '../../src/engine/model.js';
import { seededRandom } from '../../src/util/seeded-random.js';

const BASE_DIR = catalogModelDir('accounts/temper/models/byte-lm-3m');
const NOW = () => new Date('2026-01-02T03:04:05.000Z');

let work: string;
let store: ObjectStore;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'temper-deltas-mem-'));
  store = await openObjectStore(pathToFileURL(join(work, 'store')).href);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Every file under a store prefix, by name. */
async function filesAt(prefix: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const o of await store.list(`${prefix}/`))
    out.set(o.key.slice(prefix.length + 1), await store.get(o.key));
  return out;
}

function expectSameFiles(a: Map<string, Buffer>, b: Map<string, Buffer>): void {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [name, body] of a) expect(body.equals(b.get(name) as Buffer), name).toBe(true);
}

/** A small model's tensors in a map, every value nudged by `step` (an update's low bits). */
function tensors(step: number): TensorMap {
  const rnd = seededRandom(7);
  const map: TensorMap = new Map();
  for (const [name, shape] of [
    ['model.embed_tokens.weight', [272, 16]],
    ['model.layers.0.mlp.down_proj.weight', [16, 40]],
    ['model.norm.weight', [16]],
  ] as const) {
    const data = Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => rnd() - 0.5);
    for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) * (1 + step * 1e-3);
    map.set(name, { shape: [...shape], data });
  }
  return map;
}

describe('delta snapshots from weights in memory', () => {
  it("the engine's weights: bitwise the delta of the same export written to disk, and it reconstructs that export", async () => {
    const model = await TransformerModel.fromDirectory(BASE_DIR, { threads: 1 });
    await exportHfModel(model, { store, prefix: 'engine/base' }, { baseModelDir: BASE_DIR });
    // an update: every weight moves a little
    const name = 'model.layers.0.mlp.up_proj.weight';
    const w = model.tensorView(name) as Float32Array;
    const moved = Float32Array.from(w, (x, i) => x + 1e-4 * Math.sin(i));
    model.loadTensors(
      new Map([
        [name, { shape: model.tensorInfo().find((t) => t.name === name)!.shape, data: moved }],
      ]),
      { partial: true },
    );

    const onDisk = join(work, 'engine-full');
    await exportHfModel(model, { dir: onDisk }, { baseModelDir: BASE_DIR });
    const common = {
      previous: storeSnapshot(store, 'engine/base'),
      previousSnapshotIdentity: 'base',
      now: NOW,
      ttlSeconds: 3600,
    };
    const before = await writeDeltaSnapshot({
      ...common,
      next: dirSnapshot(onDisk),
      target: { store, prefix: 'engine/from-disk' },
    });
    const after = await writeDeltaSnapshot({
      ...common,
      next: memorySnapshot(
        'engine weights',
        await hfModelFiles(model.config, modelWeights(model), { baseModelDir: BASE_DIR }),
      ),
      target: { store, prefix: 'engine/from-memory' },
    });
    expect(after).toEqual(before);
    expectSameFiles(await filesAt('engine/from-memory'), await filesAt('engine/from-disk'));

    const rebuilt = join(work, 'engine-rebuilt');
    await applyDeltaSnapshot({
      base: storeSnapshot(store, 'engine/base'),
      delta: storeSnapshot(store, 'engine/from-memory'),
      target: { dir: rebuilt },
    });
    const weights = await readFile(join(rebuilt, 'model.safetensors'));
    expect(weights.equals(await readFile(join(onDisk, 'model.safetensors')))).toBe(true);
  });

  it('float32, bfloat16 and sharded exports: bitwise the deltas written from disk', async () => {
    for (const opts of [
      { dtype: 'F32' as const },
      { dtype: 'BF16' as const },
      { dtype: 'F32' as const, maxShardBytes: 20_000 },
    ]) {
      const tag = `${opts.dtype}-${opts.maxShardBytes ?? 'one'}`;
      const config = (await TransformerModel.fromDirectory(BASE_DIR, { threads: 1 })).config;
      const filesOf = (step: number) => hfModelFiles(config, tensorMapWeights(tensors(step)), opts);
      await writeExport({ store, prefix: `${tag}/base` }, await filesOf(0), { kind: 'hf_base' });
      const onDisk = join(work, `${tag}-full`);
      await writeExport({ dir: onDisk }, await filesOf(1), { kind: 'hf_base' });
      const common = {
        previous: storeSnapshot(store, `${tag}/base`),
        previousSnapshotIdentity: 'base',
        now: NOW,
      };
      const m = await writeDeltaSnapshot({
        ...common,
        next: dirSnapshot(onDisk),
        target: { store, prefix: `${tag}/disk` },
      });
      await writeDeltaSnapshot({
        ...common,
        next: memorySnapshot(tag, await filesOf(1)),
        target: { store, prefix: `${tag}/memory` },
      });
      if (opts.maxShardBytes) expect(m.files.filter((f) => f.delta).length).toBeGreaterThan(1);
      expectSameFiles(await filesAt(`${tag}/memory`), await filesAt(`${tag}/disk`));
    }
  });

  it('refuses tensors that do not fill the header they come with, naming the tensor', async () => {
    const config = (await TransformerModel.fromDirectory(BASE_DIR, { threads: 1 })).config;
    const files = await hfModelFiles(config, tensorMapWeights(tensors(0)), {});
    const weights = files.find((f) => f.tensors)!;
    const prev = Buffer.concat(
      await (async () => {
        const chunks: Buffer[] = [];
        for await (const c of (await weights.body()) as AsyncIterable<Buffer>) chunks.push(c);
        return chunks;
      })(),
    );
    const src = weights.tensors!;
    const short = { ...src, bytes: async (n: string) => (await src.bytes(n)).subarray(4) };
    await expect(
      encodeDeltaFileFromTensors(prev, short, { nextSource: 'w.safetensors' }),
    ).rejects.toThrow(/w\.safetensors: tensor 'model\.embed_tokens\.weight' gives 17404 bytes/);
  });
});

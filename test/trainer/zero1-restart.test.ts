// Where the AdamW moments live when a data-parallel run saves, restarts and switches between
// sharded (ZeRO-1) and unsharded steps. Ranks in this process, each with its own engine and
// its own DataParallelGroups, exchange through real gloo groups and save to real DCP files:
// each rank writes its own file of a sharded save, and a restart reads them as the pod does
// (a sharded rank only its part of the moments, at its own world size). The step after a
// restart must equal the uninterrupted run's; an unsharded step must not start from zero
// moments.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  commitTrainState,
  DcpCheckpoints,
  loadTrainState,
  writeTrainStateShard,
} from '../../src/checkpoints/dcp/index.js';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import type { TransformerModel } from '../../src/engine/model.js';
import {
  DataParallelGroups,
  type ReplicaPlace,
  shardRanges,
} from '../../src/trainer/data-parallel.js';
import { TrainerError } from '../../src/trainer/errors.js';
import { randomSequences, tinyModel } from '../engine/helpers.js';
import { tempDir } from './helpers.js';

const LENS = [6, 5, 7, 4, 8, 3];
const ADAM = {
  learningRate: 1e-2,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.01,
  gradClipNorm: 0.5,
};

interface Rank {
  model: TransformerModel;
  groups: DataParallelGroups;
  place: ReplicaPlace;
}
let tmp: Awaited<ReturnType<typeof tempDir>>;
let dcp: DcpCheckpoints;
beforeAll(async () => {
  tmp = await tempDir('zero1-restart');
  dcp = new DcpCheckpoints(await openObjectStore(`file://${tmp.dir}`));
});
afterAll(() => tmp?.cleanup());

const opened: DataParallelGroups[] = [];
afterEach(() => {
  for (const g of opened.splice(0)) g.close(new TrainerError('shutting_down', 'test over'));
});

/** A fresh run of `world` ranks: ranks > 0 finds rank 0's store through rank 0's groups (the JoinCollective RPC). */
function ranks(runId: string, world = 2, threads = 1): Rank[] {
  const out: Rank[] = [];
  for (let rank = 0; rank < world; rank++) {
    const groups = new DataParallelGroups({
      host: '127.0.0.1',
      timeoutMs: 20_000,
      askRoot: async (p) => out[0]!.groups.join(p.rootModelId, p.rank, p.worldSize),
    });
    opened.push(groups);
    out.push({
      model: tinyModel({ seed: 3, threads }),
      groups,
      place: {
        rank,
        worldSize: world,
        rootAddress: '127.0.0.1:1',
        rootModelId: runId,
        shardOptimizerState: false,
      },
    });
  }
  return out;
}

/** optim_step on every rank, as ModelRuntime.optimStep runs it (sharded or not). */
async function step(run: Rank[], n: number, sharded: boolean): Promise<void> {
  const seqs = randomSequences(200 + n, LENS);
  await Promise.all(
    run.map(async (r) => {
      const place = { ...r.place, shardOptimizerState: sharded };
      const [a, b] = shardRanges(seqs.length, run.length)[r.place.rank]!;
      const mine = seqs.slice(a, b);
      const tokens = mine.reduce((s, q) => s + q.tokens.length, 0);
      r.model.forwardBackwardCrossEntropy(
        mine,
        mine.flatMap((q) => q.tokens.map(() => 1)),
      );
      const id = r.place.rootModelId;
      const local = { tokens, sequences: mine.length, microBatches: 1 };
      const global = run.length > 1 ? await r.groups.allReduce(id, r.model, place, local) : local;
      const p = { ...ADAM, gradScale: 1 / global.tokens };
      // One rank is a single pod: no collective.
      if (sharded) await r.groups.shardedStep(id, r.model, place, p);
      else await r.model.optimStepAsync(p);
    }),
  );
}

/** save_state of sharded ranks, as the pod runs it: each rank writes its own file. */
async function save(run: Rank[], name: string): Promise<void> {
  await Promise.all(
    run.map((r) => {
      const place = { ...r.place, shardOptimizerState: true };
      return r.groups.shardedSave(r.place.rootModelId, r.model, place, {
        target: async () => ({ attempt: dcp.beginSave() }),
        write: (target, shard) =>
          writeTrainStateShard(r.model, dcp, name, {
            attempt: target.attempt,
            rank: r.place.rank,
            worldSize: run.length,
            shard,
          }),
        commit: (_target, shards) =>
          commitTrainState(r.model, dcp, name, shards, { worldSize: run.length }),
      });
    }),
  );
}

/** load_state_with_optimizer as the pod runs it: a sharded rank reads only its moments. */
async function load(run: Rank[], name: string, sharded: boolean): Promise<void> {
  for (const r of run) {
    const place = { ...r.place, shardOptimizerState: true };
    const extent = sharded
      ? r.groups.momentExtent(r.model, r.place.rank, r.place.worldSize)
      : undefined;
    const loaded = await loadTrainState(r.model, dcp, name, extent ? { momentShard: extent } : {});
    if (loaded.shard) r.groups.adopt(r.place.rootModelId, place, loaded.shard);
    else r.groups.afterLoad(r.place.rootModelId, r.model, undefined);
  }
}

function weights(model: TransformerModel): Float32Array {
  const views = model.trainableNames().map((n) => model.tensorView(n) as Float32Array);
  const flat = new Float32Array(views.reduce((s, v) => s + v.length, 0));
  let at = 0;
  for (const v of views) {
    flat.set(v, at);
    at += v.length;
  }
  return flat;
}

const maxDiff = (a: Float32Array, b: Float32Array) => {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
};
const bits = (f: Float32Array) => Buffer.from(f.buffer, f.byteOffset, f.byteLength);

describe('ZeRO-1 saves and restarts keep the optimizer state', () => {
  it('each rank writes its own file; restarts at 2 (sharded or not), 1 and 4 ranks equal the uninterrupted run', async () => {
    // Uninterrupted: two sharded steps, a sharded save, a third step.
    const a = ranks('uninterrupted');
    await step(a, 1, true);
    await step(a, 2, true);
    await save(a, 'two');
    await step(a, 3, true);
    const reference = weights(a[0]!.model);
    const meta = await dcp.metadata('two');
    expect(meta.files.map((f) => f.rank)).toEqual([0, 1]);
    expect(meta.step).toBe(2);
    // Rank r's file holds the moments of its own shard's range of the flat vector, no more.
    let at = 0;
    for (const name of a[0]!.model.trainableNames()) {
      for (const c of meta.tensors[`optim/${name}/exp_avg`]!.chunks) {
        const { begin, length } = a[0]!.groups.momentExtent(a[0]!.model, c.rank, 2);
        expect(at + c.flatRange[0]).toBeGreaterThanOrEqual(begin);
        expect(at + c.flatRange[1]).toBeLessThanOrEqual(begin + length);
      }
      at += a[0]!.model.tensorView(name, 'grad')!.length;
    }

    // Fresh pods, 2 sharded ranks: each reads only its part of the moments, then a sharded
    // step: the same numbers as the uninterrupted run.
    const b = ranks('sharded-restart');
    await load(b, 'two', true);
    const name0 = b[0]!.model.trainableNames()[0]!;
    expect(b[0]!.model.getOptimizerState(name0)!.m).toHaveLength(0);
    await step(b, 3, true);
    expect(maxDiff(weights(b[0]!.model), reference)).toBeLessThan(1e-6);
    expect(bits(weights(b[1]!.model)).equals(bits(weights(b[0]!.model)))).toBe(true);

    // The same restart, then an unsharded step: the shards are gathered back into the
    // engines first.
    const c = ranks('sharded-restart-unsharded-step');
    await load(c, 'two', true);
    await step(c, 3, false);
    const restarted = weights(c[0]!.model);
    expect(maxDiff(restarted, reference)).toBeLessThan(1e-6);
    expect(bits(weights(c[1]!.model)).equals(bits(restarted))).toBe(true);

    // At another rank count (the gradients summed in another order: the data-parallel
    // tolerance): one pod reads every file, four sharded ranks each read their own range
    // across the two files.
    const one = ranks('one-pod', 1);
    await load(one, 'two', false);
    await step(one, 3, false);
    expect(maxDiff(weights(one[0]!.model), reference)).toBeLessThan(1e-5);
    const four = ranks('four', 4);
    await load(four, 'two', true);
    await step(four, 3, true);
    expect(maxDiff(weights(four[0]!.model), reference)).toBeLessThan(1e-5);
    for (const r of four)
      expect(bits(weights(r.model)).equals(bits(weights(four[0]!.model)))).toBe(true);

    // The moments were used, not zeros: a step from zero moments lands far away.
    const z = ranks('zero-moments');
    await load(z, 'two', false);
    for (const r of z)
      for (const name of r.model.trainableNames()) {
        const n = r.model.tensorView(name, 'grad')!.length;
        r.model.setOptimizerState(name, new Float32Array(n), new Float32Array(n));
      }
    await step(z, 3, false);
    expect(maxDiff(weights(z[0]!.model), reference)).toBeGreaterThan(1e-4);

    // The pods that held shards load the checkpoint unsharded: their shards are dropped and
    // the engine's loaded moments are the ones the step uses.
    await load(a, 'two', false);
    await step(a, 3, false);
    expect(maxDiff(weights(a[0]!.model), reference)).toBeLessThan(1e-6);
  }, 60_000);

  it('sharded and unsharded steps give the same bits whatever the engine thread count', async () => {
    const runs = [ranks('threads-1', 2, 1), ranks('threads-3', 2, 3)];
    for (const run of runs) {
      await step(run, 1, true);
      await step(run, 2, false);
      await step(run, 3, true);
    }
    const [one, three] = runs.map((run) => weights(run[0]!.model));
    expect(bits(three!).equals(bits(one!))).toBe(true);
  }, 60_000);

  it('ranks that disagree on holding shards refuse an unsharded step alike', async () => {
    const a = ranks('half-sharded');
    await step(a, 1, true);
    // Rank 1 loads unsharded (it drops its shard); rank 0 still holds its shard.
    a[1]!.groups.afterLoad(a[1]!.place.rootModelId, a[1]!.model, undefined);
    const results = await Promise.allSettled([step(a, 2, false)]);
    expect(results[0]!.status).toBe('rejected');
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(
      /1 of 2 replicas hold a shard/,
    );
  }, 60_000);
  it('an engine whose moments were released refuses an unsharded step until restored', () => {
    const model = tinyModel({ seed: 3 });
    const seqs = randomSequences(1, [5, 4]);
    model.forwardBackwardCrossEntropy(seqs, [1, 1, 1, 1, 1, 1, 1, 1, 1]);
    model.releaseOptimizerState();
    expect(() => model.optimStep({ learningRate: 1e-3 })).toThrow(/was released/);
    for (const name of model.trainableNames()) {
      const n = model.tensorView(name, 'grad')!.length;
      model.setOptimizerState(name, new Float32Array(n), new Float32Array(n));
    }
    expect(model.optimStep({ learningRate: 1e-3 }).step).toBe(1);
  });
});

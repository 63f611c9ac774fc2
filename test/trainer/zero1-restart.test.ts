// Where the AdamW moments live when a data-parallel run switches between sharded (ZeRO-1) and
// unsharded steps around a restart. Two ranks in this process, each with its own engine and
// its own DataParallelGroups, exchange through real gloo groups; a "checkpoint" is the state
// a collective save writes (weights, gathered moments, step) and a restart loads it as the
// pod does (the engine's state set, then afterLoad). The step after a restart must equal the
// uninterrupted run's: an unsharded step must not start from zero moments.
import { afterEach, describe, expect, it } from 'vitest';
import type { TransformerModel } from '../../src/engine/model.js';
import {
  DataParallelGroups,
  type ReplicaPlace,
  shardRanges,
} from '../../src/trainer/data-parallel.js';
import { TrainerError } from '../../src/trainer/errors.js';
import { randomSequences, tinyModel } from '../engine/helpers.js';

const WORLD = 2;
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
interface Saved {
  weights: Map<string, Float32Array>;
  moments: Map<string, { m: Float32Array; v: Float32Array }>;
  step: number;
}

const opened: DataParallelGroups[] = [];
afterEach(() => {
  for (const g of opened.splice(0)) g.close(new TrainerError('shutting_down', 'test over'));
});

/** A fresh 2-rank run: rank 1 finds rank 0's store through rank 0's groups (the JoinCollective RPC). */
function ranks(runId: string): Rank[] {
  const out: Rank[] = [];
  for (let rank = 0; rank < WORLD; rank++) {
    const groups = new DataParallelGroups({
      host: '127.0.0.1',
      timeoutMs: 20_000,
      askRoot: async (p) => out[0]!.groups.join(p.rootModelId, p.rank, p.worldSize),
    });
    opened.push(groups);
    out.push({
      model: tinyModel({ seed: 3 }),
      groups,
      place: {
        rank,
        worldSize: WORLD,
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
      const [a, b] = shardRanges(seqs.length, WORLD)[r.place.rank]!;
      const mine = seqs.slice(a, b);
      const tokens = mine.reduce((s, q) => s + q.tokens.length, 0);
      r.model.forwardBackwardCrossEntropy(
        mine,
        mine.flatMap((q) => q.tokens.map(() => 1)),
      );
      const id = r.place.rootModelId;
      const global = await r.groups.allReduce(id, r.model, place, {
        tokens,
        sequences: mine.length,
        microBatches: 1,
      });
      const p = { ...ADAM, gradScale: 1 / global.tokens };
      if (sharded) await r.groups.shardedStep(id, r.model, place, p);
      else await r.model.optimStepAsync(p);
    }),
  );
}

/** A sharded save: every rank gathers the moments; rank 0's engine holds what is written. */
async function save(run: Rank[]): Promise<Saved> {
  await Promise.all(
    run.map((r) =>
      r.groups.gatherMoments(r.place.rootModelId, r.model, {
        ...r.place,
        shardOptimizerState: true,
      }),
    ),
  );
  const model = run[0]!.model;
  const saved: Saved = { weights: new Map(), moments: new Map(), step: model.step };
  for (const name of model.trainableNames()) {
    saved.weights.set(name, Float32Array.from(model.tensorView(name) as Float32Array));
    const st = model.getOptimizerState(name)!;
    saved.moments.set(name, { m: Float32Array.from(st.m), v: Float32Array.from(st.v) });
  }
  for (const r of run) r.groups.afterSave(r.model);
  return saved;
}

/** LoadStateWithOptimizer as the pod runs it: the engine's state, then afterLoad. */
function load(run: Rank[], saved: Saved, sharded: boolean): void {
  for (const r of run) {
    for (const [name, w] of saved.weights) (r.model.tensorView(name) as Float32Array).set(w);
    for (const [name, st] of saved.moments) r.model.setOptimizerState(name, st.m, st.v);
    r.model.step = saved.step;
    r.groups.afterLoad(
      r.place.rootModelId,
      r.model,
      sharded ? { ...r.place, shardOptimizerState: true } : undefined,
    );
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

describe('ZeRO-1 restarts keep the optimizer state', () => {
  it('an unsharded step after a sharded restart equals the uninterrupted run', async () => {
    // Uninterrupted: two sharded steps, a collective save, a third step.
    const a = ranks('uninterrupted');
    await step(a, 1, true);
    await step(a, 2, true);
    const saved = await save(a);
    await step(a, 3, true);
    const reference = weights(a[0]!.model);

    // Restarted on fresh pods from the checkpoint as sharded ranks, then an unsharded step:
    // the shards are gathered back into the engines first.
    const b = ranks('sharded-restart');
    load(b, saved, true);
    expect(b[0]!.model.getOptimizerState(b[0]!.model.trainableNames()[0]!)!.m).toHaveLength(0);
    await step(b, 3, false);
    const restarted = weights(b[0]!.model);
    expect(maxDiff(restarted, reference)).toBeLessThan(1e-6);
    expect(bits(weights(b[1]!.model)).equals(bits(restarted))).toBe(true);
    // The moments were used, not zeros: a step from zero moments moves the weights far more.
    const c = ranks('zero-moments');
    const zeros = new Map(
      [...saved.moments].map(([name, st]) => [
        name,
        { m: new Float32Array(st.m.length), v: new Float32Array(st.v.length) },
      ]),
    );
    load(c, { ...saved, moments: zeros }, false);
    await step(c, 3, false);
    expect(maxDiff(weights(c[0]!.model), reference)).toBeGreaterThan(1e-4);

    // The pods that held shards load the checkpoint unsharded: their shards are dropped and
    // the engine's loaded moments are the ones the step uses.
    load(a, saved, false);
    await step(a, 3, false);
    expect(maxDiff(weights(a[0]!.model), reference)).toBeLessThan(1e-6);
  }, 60_000);

  it('ranks that disagree on holding shards refuse an unsharded step alike', async () => {
    const a = ranks('half-sharded');
    await step(a, 1, true);
    // Rank 1 is replaced by a fresh pod that loads the weights unsharded; rank 0 still holds
    // its shard from before.
    load([a[1]!], { weights: new Map(), moments: new Map(), step: 1 }, false);
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

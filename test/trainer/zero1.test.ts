// ZeRO-1 between real processes: each rank keeps only its shard of the AdamW moments, updates
// its shard of the weights and all-gathers them. Against the unsharded step (gradients
// all-reduced, the engine's own AdamW on every rank) at the same rank count the weights agree
// within 1e-6 and the grad norms within 1e-6 relative; against one process on the whole batch
// within the data-parallel tolerance (AdamW amplifies summation-order noise near zero
// gradients); every rank ends with the same bits, over shared memory and over TCP alike.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CollectiveStore } from '../../src/trainer/collectives.js';
import { randomSequences, tinyModel } from '../engine/helpers.js';

const rankScript = fileURLToPath(new URL('./fixtures/zero-rank.ts', import.meta.url));
const STEPS = 3;

interface Run {
  weights: Float32Array;
  norms: number[];
}
type Wire = { weights: string; norms: number[] };

const floats = (b64: string) => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
};

interface RankRuns {
  plain: Run;
  zero: Run;
  /** The ZeRO-1 run again, with the collectives forced onto TCP. */
  zeroTcp: Run;
  /** What the first group's collectives travelled on. */
  transport: string;
}

function runRank(args: Record<string, number | string>): Promise<RankRuns> {
  return new Promise((resolve, reject) => {
    const child = fork(rankScript, [JSON.stringify(args)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    let result: RankRuns | undefined;
    child.on('message', (m: { plain: Wire; zero: Wire; zeroTcp: Wire; transport: string }) => {
      const run = (w: Wire) => ({ weights: floats(w.weights), norms: w.norms });
      result = {
        plain: run(m.plain),
        zero: run(m.zero),
        zeroTcp: run(m.zeroTcp),
        transport: m.transport,
      };
    });
    child.on('exit', (code) => {
      if (code === 0 && result) resolve(result);
      else reject(new Error(`rank ${args.rank} exited ${code}: ${stderr}`));
    });
  });
}

/** One process, whole batches, the engine's AdamW: the same run as the rank script's. */
function singleProcess(): Run {
  const model = tinyModel({ seed: 3 });
  const lens = [6, 5, 7, 4, 8, 3, 6, 5];
  const norms: number[] = [];
  for (let step = 1; step <= STEPS; step++) {
    const seqs = randomSequences(100 + step, lens);
    model.forwardBackwardCrossEntropy(
      seqs,
      seqs.flatMap((s) => Array.from(s.tokens, () => 1)),
    );
    const r = model.optimStep({
      learningRate: 1e-2,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: 0.01,
      gradClipNorm: 0.5,
      gradScale: 1 / lens.reduce((s, l) => s + l, 0),
    });
    norms.push(r.gradNorm);
  }
  const views = model.trainableNames().map((n) => model.tensorView(n, 'value') as Float32Array);
  const flat = new Float32Array(views.reduce((s, v) => s + v.length, 0));
  let at = 0;
  for (const v of views) {
    flat.set(v, at);
    at += v.length;
  }
  return { weights: flat, norms };
}

const maxDiff = (a: Float32Array, b: Float32Array) => {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
};
const bits = (f: Float32Array) => Buffer.from(f.buffer, f.byteOffset, f.byteLength);

describe('ZeRO-1 (sharded AdamW moments) across processes', () => {
  let store: CollectiveStore;
  beforeAll(() => {
    store = new CollectiveStore('127.0.0.1', 0);
  });
  afterAll(() => store?.close());

  it.each([2, 4])(
    '%i ranks: equals the unsharded AdamW within 1e-6, identical on every rank',
    async (world) => {
      const ranks = await Promise.all(
        Array.from({ length: world }, (_, rank) =>
          runRank({ rank, world, storePort: store.port, prefix: `zero/${world}`, steps: STEPS }),
        ),
      );
      const { plain, zero } = ranks[0]!;
      expect(maxDiff(zero.weights, plain.weights)).toBeLessThan(1e-6);
      for (let i = 0; i < STEPS; i++) {
        expect(Math.abs(zero.norms[i]! - plain.norms[i]!)).toBeLessThan(1e-6 * plain.norms[i]!);
      }
      for (const r of ranks) {
        expect(bits(r.zero.weights).equals(bits(zero.weights))).toBe(true);
        expect(r.zero.norms).toEqual(zero.norms);
        // Shared memory (these processes share a host) and TCP: the same bits.
        expect(r.transport).toBe('shm');
        expect(bits(r.zeroTcp.weights).equals(bits(zero.weights))).toBe(true);
        expect(r.zeroTcp.norms).toEqual(zero.norms);
      }
      // The same training as one process on whole batches, up to the float summation order
      // of the gradients (which AdamW's first steps amplify near zero gradients: a looser
      // bound, relative to the step size), and the weights did move.
      const one = singleProcess();
      expect(maxDiff(zero.weights, one.weights)).toBeLessThan(1e-2 * 1e-2);
      expect(maxDiff(one.weights, tinyModelWeights())).toBeGreaterThan(1e-3);
    },
    60_000,
  );
});

function tinyModelWeights(): Float32Array {
  const model = tinyModel({ seed: 3 });
  const views = model.trainableNames().map((n) => model.tensorView(n, 'value') as Float32Array);
  const flat = new Float32Array(views.reduce((s, v) => s + v.length, 0));
  let at = 0;
  for (const v of views) {
    flat.set(v, at);
    at += v.length;
  }
  return flat;
}

// The gloo collectives between real processes over TCP (rendezvous through the store a rank-0
// pod serves): sums match a float64 reference, every rank gets the same bits, a rerun gives
// the same bits, all-reduce in place equals reduce-scatter + all-gather bit for bit, and a rank that never joins fails the others with a typed error.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CollectiveStore, ProcessGroup } from '../../src/trainer/collectives.js';

const rankScript = fileURLToPath(new URL('./fixtures/collective-rank.ts', import.meta.url));

interface RankResult {
  reduced: Float32Array;
  gathered: Float32Array;
  counts: number[];
}

const floats = (b64: string) => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
};

type Wire = { reduced: string; gathered: string; counts: number[] };

/** One rank process; it runs two rounds (a run and its rerun). */
function runRank(args: Record<string, number | string>): Promise<RankResult[]> {
  return new Promise((resolve, reject) => {
    const child = fork(rankScript, [JSON.stringify(args)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    let result: RankResult[] | undefined;
    child.on('message', (m: Wire[]) => {
      result = m.map((w) => ({
        reduced: floats(w.reduced),
        gathered: floats(w.gathered),
        counts: w.counts,
      }));
    });
    child.on('exit', (code) => {
      if (code === 0 && result) resolve(result);
      else reject(new Error(`rank ${args.rank} exited ${code}: ${stderr}`));
    });
  });
}

// The same generator as the rank script, for the float64 reference.
function values(seed: number, rank: number, n: number): Float32Array {
  let s = (seed * 7919 + rank * 104729 + 1) >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * 10 ** ((s % 7) - 3);
  }
  return out;
}

describe('gloo collectives between processes', () => {
  let store: CollectiveStore;
  let round = 0;

  beforeAll(() => {
    store = new CollectiveStore('127.0.0.1', 0);
  });
  afterAll(() => store?.close());

  /** [run, rerun], each a result per rank. */
  async function run(world: number, n: number, seed: number): Promise<RankResult[][]> {
    const prefix = `test/${round++}`;
    const perRank = await Promise.all(
      Array.from({ length: world }, (_, rank) =>
        runRank({ rank, world, storePort: store.port, prefix, n, seed }),
      ),
    );
    return [perRank.map((r) => r[0]!), perRank.map((r) => r[1]!)];
  }

  it.each([2, 3])(
    'world %i: sums match float64, identical bits on every rank and on a rerun',
    async (world) => {
      // Not a multiple of the world size: the last shard is padded; > 1 ring segment.
      const n = 300_001;
      const [a, b] = (await run(world, n, 5)) as [RankResult[], RankResult[]];
      const ref = new Float64Array(n);
      const mag = new Float64Array(n);
      for (let r = 0; r < world; r++) {
        const x = values(5, r, n);
        for (let i = 0; i < n; i++) {
          ref[i]! += x[i]!;
          mag[i]! += Math.abs(x[i]!);
        }
      }
      // float32 rounding of a few adds, relative to the magnitudes summed (cancellation)
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const err = Math.abs(a[0]!.reduced[i]! - ref[i]!) / mag[i]!;
        const err2 = Math.abs(a[0]!.gathered[i]! - ref[i]!) / mag[i]!;
        worst = Math.max(worst, err, err2);
      }
      expect(worst).toBeLessThan(1e-6);
      const bits = (f: Float32Array) => Buffer.from(f.buffer, f.byteOffset, f.byteLength);
      for (const r of [...a, ...b]) {
        expect(bits(r.reduced).equals(bits(a[0]!.reduced))).toBe(true);
        expect(bits(r.gathered).equals(bits(a[0]!.gathered))).toBe(true);
        // All-reduce in place on the pieces and reduce-scatter + all-gather on the packed,
        // padded buffer: the same operations in the same order, so the same bits.
        expect(bits(r.reduced).equals(bits(r.gathered))).toBe(true);
        expect(r.counts).toEqual([(world * (world + 1)) / 2, world]);
      }
    },
    60_000,
  );

  it('a rank that never joins fails the others with a typed error', async () => {
    await expect(
      ProcessGroup.join({
        rank: 0,
        world: 2,
        storeHost: '127.0.0.1',
        storePort: store.port,
        prefix: 'lonely',
        host: '127.0.0.1',
        timeoutMs: 300,
      }),
    ).rejects.toMatchObject({ code: 'unavailable' });
  });
});

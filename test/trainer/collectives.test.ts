// The collectives between real processes, over TCP and over the same-host shared-memory
// transport (rendezvous through the store a rank-0 pod serves): sums match a float64
// reference, every rank gets the same bits, a rerun and the other transport give the same
// bits, all-reduce in place equals reduce-scatter + all-gather bit for bit, and a rank that
// never joins fails the others with a typed error.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CollectiveStore, ProcessGroup } from '../../src/trainer/collectives.js';

const rankScript = fileURLToPath(new URL('./fixtures/collective-rank.ts', import.meta.url));

interface RankResult {
  transport: 'shm' | 'tcp';
  /** The reduced values (rank 0's first round only). */
  reduced?: Float32Array;
  reducedDigest: string;
  gatheredDigest: string;
  counts: number[];
}

const floats = (b64: string) => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
};

type Wire = Omit<RankResult, 'reduced'> & { reduced?: string };

/** One rank process: per transport, a run and its rerun. */
function runRank(args: Record<string, unknown>): Promise<RankResult[]> {
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
      result = m.map((w) => ({ ...w, reduced: w.reduced ? floats(w.reduced) : undefined }));
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

  /** Per rank: TCP run, TCP rerun, shared-memory run, shared-memory rerun. */
  async function run(world: number, n: number, seed: number): Promise<RankResult[][]> {
    const prefix = `test/${round++}`;
    return Promise.all(
      Array.from({ length: world }, (_, rank) =>
        runRank({
          rank,
          world,
          storePort: store.port,
          prefix,
          n,
          seed,
          sharedMemory: [false, true],
        }),
      ),
    );
  }

  it.each([2, 4])(
    'world %i: sums match float64; the same bits on every rank, on a rerun, over TCP and over shared memory',
    async (world) => {
      // Not a multiple of the world size: the last shard is padded; > 1 ring segment, and at 2
      // ranks > 1 shared-memory window.
      const n = 600_001;
      const ranks = await run(world, n, 5);
      const reduced = ranks[0]![0]!.reduced!;
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
      for (let i = 0; i < n; i++)
        worst = Math.max(worst, Math.abs(reduced[i]! - ref[i]!) / mag[i]!);
      expect(worst).toBeLessThan(1e-6);
      const want = ranks[0]![0]!.reducedDigest;
      for (const results of ranks) {
        // These processes share a host (boot and network namespace): shared memory is taken
        // when allowed.
        expect(results.map((r) => r.transport)).toEqual(['tcp', 'tcp', 'shm', 'shm']);
        for (const r of results) {
          expect(r.reducedDigest).toBe(want);
          // All-reduce in place on the pieces and reduce-scatter + all-gather on the packed,
          // padded buffer: the same operations in the same order, so the same bits.
          expect(r.gatheredDigest).toBe(want);
          expect(r.counts).toEqual([(world * (world + 1)) / 2, world]);
        }
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

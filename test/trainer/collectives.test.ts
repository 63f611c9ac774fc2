// The collectives between real processes, over TCP and over the same-host shared-memory
// transport (rendezvous through the store a rank-0 pod serves): sums match a float64
// reference, every rank gets the same bits, a rerun and the other transport give the same
// bits, all-reduce in place equals reduce-scatter + all-gather bit for bit; ranks in different
// network namespaces keep TCP; over shared memory a rank that stops, dies or passes other
// lengths fails the others with a clear error and no segment outlives its group; and a rank
// that never joins fails the others with a typed error.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CollectiveStore, ProcessGroup } from '../../src/trainer/collectives.js';
import { IpcPeer } from '../support/ipc-peer.js';
import { createTestHost } from '../support/netns.js';

const rankScript = fileURLToPath(new URL('./fixtures/collective-rank.ts', import.meta.url));
/** A fixtures/collective-peer.ts process (`exec`: an argv prefix, a network-namespace host). */
const startPeer = (exec?: string[]) =>
  IpcPeer.start(new URL('./fixtures/collective-peer.ts', import.meta.url), { exec, quiet: true });

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

/**
 * One rank process: per transport, a run and its rerun. `exec`: an argv prefix it runs under
 * (a network-namespace host).
 */
function runRank(args: Record<string, unknown>, exec: string[] = []): Promise<RankResult[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      exec[0] ?? process.execPath,
      [
        ...exec.slice(1),
        ...(exec.length > 0 ? [process.execPath] : []),
        '--import',
        'tsx',
        rankScript,
        JSON.stringify(args),
      ],
      { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] },
    );
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

describe('collectives between processes', () => {
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
      // ranks > 1 shared-memory window (2^20 values a chunk).
      const n = world === 2 ? 2_100_001 : 600_001;
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

  it('shared memory: a rank that stops or dies fails the others with a clear error; no segment outlives its group', async () => {
    const shmBefore = new Set(readdirSync('/dev/shm'));
    const peers = await Promise.all([startPeer(), startPeer()]);
    const [a, b] = peers as [IpcPeer, IpcPeer];
    try {
      const join = (prefix: string, timeoutMs: number) =>
        Promise.all(
          peers.map((p, rank) =>
            p.call({
              op: 'join',
              rank,
              world: 2,
              storePort: store.port,
              prefix,
              timeoutMs,
              sharedMemory: true,
            }),
          ),
        );
      // Buffers of different lengths: every rank says so (the rings' messages would not match).
      expect(await join('shm-fail/0', 20_000)).toEqual(['shm', 'shm']);
      const mismatch = await Promise.allSettled([
        a.call({ op: 'allreduce', floats: 1000 }),
        b.call({ op: 'allreduce', floats: 999 }),
      ]);
      for (const r of mismatch) {
        expect(r.status).toBe('rejected');
        expect(String((r as PromiseRejectedResult).reason)).toMatch(
          /ranks passed buffers of different lengths \(rank \d: 1 buffers, (1000|999) values; rank \d: 1 buffers, (999|1000) values\)/,
        );
      }
      expect(await join('shm-fail/1', 1_500)).toEqual(['shm', 'shm']);
      // Its own segment and the peer's.
      expect(await a.call({ op: 'segments' })).toBe(2);
      // A rank that does not take part: the others time out, as a TCP receive would.
      await expect(a.call({ op: 'allreduce', floats: 1000 })).rejects.toThrow(
        /all-reduce \(shared memory\): rank 1 did not arrive within 1500 ms/,
      );
      // The failed group was closed: its segments are unmapped, and its peer learns at once.
      expect(await a.call({ op: 'segments' })).toBe(0);
      await expect(b.call({ op: 'allreduce', floats: 1000 })).rejects.toThrow(
        /rank 0 left the group|a peer rank vanished/,
      );
      expect(await b.call({ op: 'segments' })).toBe(0);

      // A rank whose process dies mid-collective: the other fails at once (the timeout is
      // ten minutes; the test's own limit is far shorter).
      expect(await join('shm-fail/2', 600_000)).toEqual(['shm', 'shm']);
      const pending = a.call({ op: 'allreduce', floats: 1 << 20 });
      b.child.kill('SIGKILL');
      await expect(pending).rejects.toThrow(/a peer rank vanished/);
      expect(await a.call({ op: 'segments' })).toBe(0);
    } finally {
      for (const p of peers) p.child.kill('SIGKILL');
    }
    // The segments are memory files without a name: nothing was ever created in /dev/shm.
    const created = readdirSync('/dev/shm').filter((n) => !shmBefore.has(n));
    expect(created.filter((n) => /temper|collective/.test(n))).toEqual([]);
  }, 30_000);

  it('ranks in different network namespaces (hosts, as the tests simulate them) keep TCP between them; edges within a host share memory, with the same bits', async () => {
    const host = createTestHost(0);
    const outer = new CollectiveStore(host.gatewayIp, 0);
    try {
      /** `world` ranks, those listed in `inside` in the namespace host, the others outside. */
      const run = (world: number, inside: number[], prefix: string, n: number) =>
        Promise.all(
          Array.from({ length: world }, (_, rank) => {
            const args = {
              rank,
              world,
              storeHost: host.gatewayIp,
              storePort: outer.port,
              prefix,
              n,
              seed: 9,
              sharedMemory: [false, true],
              host: inside.includes(rank) ? host.ip : host.gatewayIp,
            };
            return runRank(args, inside.includes(rank) ? host.exec : []);
          }),
        );
      // Two ranks on two hosts: TCP, shared memory allowed or not.
      const two = await run(2, [1], 'netns/2', 10_001);
      expect(two.flat().map((r) => r.transport)).toEqual(Array(8).fill('tcp'));
      expect(new Set(two.flat().map((r) => r.reducedDigest)).size).toBe(1);
      // Ranks 0-2 on one host, 3 on the other: the ring's edges 0→1 and 1→2 share memory, 2→3
      // and 3→0 are TCP (rank 1 has both edges in memory, rank 3 none). The same bits as TCP
      // everywhere (the first two rounds), on every rank.
      const four = await run(4, [3], 'netns/4', 600_001);
      const expected = ['tcp+shm', 'tcp+shm', 'tcp+shm', 'tcp'];
      four.forEach((results, rank) => {
        expect(results.map((r) => r.transport)).toEqual([
          'tcp',
          'tcp',
          expected[rank],
          expected[rank],
        ]);
      });
      const digests = four.flat().flatMap((r) => [r.reducedDigest, r.gatheredDigest]);
      expect(new Set(digests).size).toBe(1);

      // A rank dying mid-collective in such a group (its edge from rank 0 in memory): the others
      // fail (on whichever link notices first: its socket to rank 0 hanging up, or a TCP pair)
      // rather than wait out the ten-minute timeout (the test's limit is far shorter), and rank
      // 0's segments go with its group.
      const peers = await Promise.all([startPeer(), startPeer(), startPeer(host.exec)]);
      try {
        const joined = await Promise.all(
          peers.map((p, rank) =>
            p.call({
              op: 'join',
              rank,
              world: 3,
              storeHost: host.gatewayIp,
              storePort: outer.port,
              prefix: 'netns/3',
              timeoutMs: 600_000,
              sharedMemory: true,
              host: rank === 2 ? host.ip : host.gatewayIp,
            }),
          ),
        );
        expect(joined).toEqual(['tcp+shm', 'tcp+shm', 'tcp']);
        const floats = 4 << 20;
        const pending = [0, 2].map((r) => peers[r]!.call({ op: 'allreduce', floats }));
        void peers[1]!.call({ op: 'allreduce', floats }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 20));
        peers[1]!.child.kill('SIGKILL');
        const [zero, two] = await Promise.allSettled(pending);
        expect(zero!.status).toBe('rejected');
        expect(two!.status).toBe('rejected');
        expect(await peers[0]!.call({ op: 'segments' })).toBe(0);
      } finally {
        for (const p of peers) p.child.kill('SIGKILL');
      }
    } finally {
      outer.close();
      host.destroy();
    }
  }, 90_000);

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

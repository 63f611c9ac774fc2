// A replica applying arc_v2 deltas (in process, file:// bucket): the delta is decoded into
// spare buffers and checked tensor by tensor before it replaces the held snapshot, so a
// refused or corrupt delta leaves the replica holding and serving exactly what it had, and a
// good delta against that snapshot still applies afterwards. Both weight modes.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRawSafetensors } from '../../src/checkpoints/deltas/raw-safetensors.js';
import { storeSnapshot } from '../../src/checkpoints/deltas/snapshot.js';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import type { TensorMap } from '../../src/checkpoints/safetensors.js';
import { ReplicaRuntime } from '../../src/deployments/replica/runtime.js';
import { parseHfConfig } from '../../src/engine/config.js';
import {
  baseConfig,
  baseDir,
  baseTensors,
  engineLogprobs,
  mae,
  makeBucket,
  perturb,
  writeDelta,
  writeFull,
} from './fixtures.js';

const buckets: string[] = [];
afterAll(async () => {
  for (const b of buckets) await rm(b, { recursive: true, force: true });
});

const inc = (previous: string) => ({
  previous_snapshot_identity: previous,
  compression_format: 'arc_v2' as const,
  checksum_format: 'alder32' as const,
});

async function startReplica(bucketUrl: string, weightsAs: 'initializers' | 'inputs') {
  const cfg = await baseConfig();
  const files = new Map<string, Buffer>();
  for (const f of ['config.json', 'model.safetensors'])
    files.set(f, await readFile(join(baseDir, f)));
  const store = await openObjectStore(bucketUrl);
  return ReplicaRuntime.start({
    replicaId: 'r0',
    config: parseHfConfig(cfg),
    baseConfig: cfg,
    baseWeights: { identity: '', files },
    openSnapshot: (id) => storeSnapshot(store, id),
    transition: 'ASYNC',
    weightsAs,
  });
}

const tokens = Array.from(Buffer.from('Deltas apply in place: 1, 2, 3.'));

/** Echoed prompt logprobs from the replica, and the snapshot that served them. */
async function served(rt: ReplicaRuntime): Promise<{ lp: number[]; snapshot: string | null }> {
  let lp: number[] = [];
  let snapshot: string | null = null;
  await rt.generate(
    {
      prompt: tokens,
      maxTokens: 1,
      temperature: 0,
      topP: 1,
      topK: 0,
      stopTokens: [],
      topLogprobs: 0,
      echo: true,
    },
    (e) => {
      if (e.type === 'prompt') {
        lp = (e.promptLogprobs ?? []).slice(1) as number[];
        snapshot = e.snapshot;
      }
    },
  );
  return { lp, snapshot };
}

async function load(rt: ReplicaRuntime, identity: string, previous?: string) {
  rt.signal({
    identity,
    ...(previous ? { incremental_snapshot_metadata: inc(previous) } : {}),
  });
  await rt.settled();
  return rt.status().loads.at(-1);
}

async function expectServing(rt: ReplicaRuntime, identity: string, weights: TensorMap) {
  const { lp, snapshot } = await served(rt);
  expect(snapshot).toBe(identity);
  expect(mae(lp, await engineLogprobs(weights, tokens))).toBeLessThan(1e-4);
}

describe.each(['initializers', 'inputs'] as const)('delta hot-load (weights as %s)', (mode) => {
  it('applies deltas into spare buffers; refused and corrupt deltas leave the held snapshot intact', async () => {
    const bucket = await makeBucket();
    buckets.push(bucket.dir);
    const w0 = await baseTensors();
    const w1 = perturb(w0, 1);
    const w2 = perturb(w1, 2);
    const w3 = perturb(w2, 3);
    await writeFull(bucket.dir, 'v1', w1);
    await writeDelta(bucket.dir, 'v2', 'v1', w2, w1);
    await writeDelta(bucket.dir, 'v3', 'v2', w3, w2);
    const rt = await startReplica(bucket.url, mode);

    expect((await load(rt, 'v1'))?.error).toBeNull();
    await expectServing(rt, 'v1', w1);
    expect((await load(rt, 'v2', 'v1'))?.error).toBeNull();
    await expectServing(rt, 'v2', w2);

    // a delta against a snapshot the replica does not hold
    const refused = await load(rt, 'v2-again', 'v0');
    expect(refused?.error).toMatch(/delta against 'v0', which this replica does not hold/);
    await expectServing(rt, 'v2', w2);

    // a corrupt copy of v3: one payload byte flipped, in the last tensor so that every other
    // tensor has been decoded (into spare buffers) before the checksum fails
    const good = await readFile(join(bucket.dir, 'v3', 'model-00000.safetensors'));
    const st = parseRawSafetensors(good, 'v3');
    const last = st.entries.reduce((a, b) => (b.end > a.end ? b : a));
    const bad = Buffer.from(good);
    bad[st.dataStart + last.end - 12] = (bad[st.dataStart + last.end - 12] as number) ^ 0x40;
    await writeDelta(bucket.dir, 'v3-bad', 'v2', w3, w2);
    await writeFile(join(bucket.dir, 'v3-bad', 'model-00000.safetensors'), bad);
    const corrupt = await load(rt, 'v3-bad', 'v2');
    expect(corrupt?.error).toMatch(/v3-bad' is corrupt: .*(checksum|zstd)/);
    await expectServing(rt, 'v2', w2);

    // the held v2 is untouched: the good v3 (a delta against it) applies bit for bit
    expect((await load(rt, 'v3', 'v2'))?.error).toBeNull();
    await expectServing(rt, 'v3', w3);

    // a delta against the last full snapshot (v1), as the trainer takes them, applies while
    // v3 is served: the replica kept v1's weights
    const w4 = perturb(w1, 4);
    await writeDelta(bucket.dir, 'v4', 'v1', w4, w1);
    expect((await load(rt, 'v4', 'v1'))?.error).toBeNull();
    await expectServing(rt, 'v4', w4);
    expect(rt.status().loads.map((l) => [l.identity, l.error === null])).toEqual([
      ['v1', true],
      ['v2', true],
      ['v2-again', false],
      ['v3-bad', false],
      ['v3', true],
      ['v4', true],
    ]);
  });
});

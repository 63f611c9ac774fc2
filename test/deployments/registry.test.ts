// Deployment lifecycle: create / get / list / scale (new replicas catch up on the delta chain) /
// scale to zero / delete, with real replica processes.
import { afterAll, describe, expect, it } from 'vitest';
import { DeploymentError, DeploymentRegistry } from '../../src/deployments/index.js';
import {
  baseDir,
  baseTensors,
  headers,
  makeBucket,
  perturb,
  waitLoaded,
  waitSettled,
  writeDelta,
  writeFull,
} from './fixtures.js';

// biome-ignore lint/suspicious/noExplicitAny: response JSON read loosely in assertions
type Json = Record<string, any>;

const registry = new DeploymentRegistry(undefined, { openGateways: true });
afterAll(async () => {
  await registry.close();
});

describe('deployment lifecycle', () => {
  it('create, list, scale with catch-up, refuse a delta the replicas do not hold, scale to zero, delete', async () => {
    const bucket = await makeBucket();
    const w1 = perturb(await baseTensors(), 21);
    const w2 = perturb(w1, 22);
    await writeFull(bucket.dir, 'step-1', w1);
    await writeDelta(bucket.dir, 'step-2', 'step-1', w2, w1);
    await writeDelta(bucket.dir, 'step-3', 'step-1', perturb(w1, 23), w1);

    const req = {
      account: 'acme',
      deploymentId: 'serve-1',
      baseModel: 'accounts/temper/models/byte-lm-3m',
      baseModelDir: baseDir,
      hotLoad: { bucketType: 'S3' as const, bucketUrl: bucket.url },
      minReplicaCount: 1,
      maxReplicaCount: 2,
    };
    await expect(registry.create({ ...req, deploymentId: '1bad' })).rejects.toThrow(
      DeploymentError,
    );
    await expect(
      registry.create({ ...req, hotLoad: { bucketUrl: `${bucket.url}/` } }),
    ).rejects.toThrow(/trailing|slash/);
    const d = await registry.create(req);
    expect(d).toMatchObject({
      name: 'accounts/acme/deployments/serve-1',
      state: 'READY',
      replicaCount: 1,
      hotLoad: { transitionType: 'ASYNC', bucketType: 'S3' },
    });
    await expect(registry.create(req)).rejects.toThrow(/already exists/);
    expect(registry.list('acme').map((x) => x.name)).toEqual([d.name]);
    expect(registry.list('other')).toEqual([]);

    const url = d.gatewayUrl as string;
    const H = headers(d.name);
    const post = (path: string, body: unknown) =>
      fetch(`${url}${path}`, { method: 'POST', headers: H, body: JSON.stringify(body) });
    const inc = (prev: string) => ({
      previous_snapshot_identity: prev,
      compression_format: 'arc_v2',
      checksum_format: 'alder32',
    });
    expect((await post('/hot_load/v1/models/hot_load', { identity: 'step-1' })).status).toBe(200);
    await waitLoaded(url, 'step-1');
    // a per-file hint before the signal starts the fetch early
    expect(
      (
        await post('/hot_load/v1/models/hot_load/hint', {
          snapshot: { identity: 'step-2', incremental_snapshot_metadata: inc('step-1') },
          filename: 'model-00000.safetensors',
        })
      ).status,
    ).toBe(200);
    expect(
      (
        await post('/hot_load/v1/models/hot_load', {
          identity: 'step-2',
          incremental_snapshot_metadata: inc('step-1'),
        })
      ).status,
    ).toBe(200);
    await waitLoaded(url, 'step-2');

    // scale up: the new replica replays step-1 (full) then step-2 (delta) before taking traffic
    const scaled = await registry.scale(d.name, { minReplicaCount: 2, maxReplicaCount: 2 });
    expect(scaled).toMatchObject({ state: 'READY', replicaCount: 2, minReplicaCount: 2 });
    const st = (await waitLoaded(url, 'step-2')) as Json;
    expect(st.replicas).toHaveLength(2);

    // a replica that dies is replaced, and the replacement catches up on the chain
    const victim = registry.replicas(d.name)[0] as { id: string; pid: number };
    process.kill(victim.pid, 'SIGKILL');
    const t0 = Date.now();
    while (
      registry.get(d.name).status.replicaRestarts === 0 ||
      registry.get(d.name).replicaCount < 2
    ) {
      if (Date.now() - t0 > 30_000) throw new Error('replica not replaced');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(registry.replicas(d.name).map((r) => r.id)).not.toContain(victim.id);
    expect(registry.get(d.name).status.reason).toMatch(/replaced/);
    await waitLoaded(url, 'step-2');

    // step-3 is a delta against step-1, the last full snapshot: every replica (the replacement
    // too, which replayed the chain) still holds its weights, so it applies over step-2
    expect(
      (
        await post('/hot_load/v1/models/hot_load', {
          identity: 'step-3',
          incremental_snapshot_metadata: inc('step-1'),
        })
      ).status,
    ).toBe(200);
    await waitLoaded(url, 'step-3');

    // step-3b is a delta against step-2: in the ledger, but no replica holds step-2 any more
    await writeDelta(bucket.dir, 'step-3b', 'step-2', perturb(w2, 25), w2);
    expect(
      (
        await post('/hot_load/v1/models/hot_load', {
          identity: 'step-3b',
          incremental_snapshot_metadata: inc('step-2'),
        })
      ).status,
    ).toBe(200);
    await waitSettled(url);
    const after = (await (await fetch(`${url}/hot_load/v1/models/hot_load`)).json()) as Json;
    for (const r of after.replicas) {
      expect(r.current_snapshot_identity).toBe('step-3');
      expect(r.loading_state.error).toMatch(/does not hold/);
    }
    const served = (await (
      await post('/inference/v1/completions', { prompt: 'hi', max_tokens: 2 })
    ).json()) as Json;
    expect(served.snapshot_identity).toBe('step-3');

    const zero = await registry.scaleToZero(d.name);
    expect(zero).toMatchObject({
      state: 'READY',
      replicaCount: 0,
      minReplicaCount: 0,
      maxReplicaCount: 0,
    });
    const none = await post('/inference/v1/completions', { prompt: 'hi', max_tokens: 2 });
    expect(none.status).toBe(503);
    expect(registry.get(d.name).name).toBe(d.name);

    // a snapshot signalled at zero replicas is what the next replica serves
    await writeFull(bucket.dir, 'step-4', perturb(w2, 24));
    expect((await post('/hot_load/v1/models/hot_load', { identity: 'step-4' })).status).toBe(200);
    expect(
      (await registry.scale(d.name, { minReplicaCount: 1, maxReplicaCount: 1 })).replicaCount,
    ).toBe(1);
    await waitLoaded(url, 'step-4');

    await registry.delete(d.name);
    expect(() => registry.get(d.name)).toThrow(/not found/);
  });
});

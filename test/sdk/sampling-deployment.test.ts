// ServiceClient.createDeploymentSampler / createSamplingClient over real processes: a trainer
// pod saves a base and two arc_v2 delta snapshots of it; the service creates its deployment (two
// replica processes) through the registry, hot-loads the chain base first and waits until
// every replica serves the requested snapshot; the deployment's logprobs match the trainer's.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUNDLED_MODEL } from '../../src/catalog/bundled.js';
import { DeploymentRegistry } from '../../src/deployments/index.js';
import { HotLoadClient, type SampledCompletion } from '../../src/sdk/deployment-sampler.js';
import { ServiceClient, TrainerError, type TrainingClient } from '../../src/sdk/index.js';
import type { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import { testLauncher } from '../trainer/helpers.js';

const registry = new DeploymentRegistry(undefined, { openGateways: true });
let launcher: LocalProcessLauncher | undefined;
let service: ServiceClient | undefined;
afterAll(async () => {
  await service?.close();
  await registry.close();
  for (const job of (await launcher?.list()) ?? [])
    await launcher?.stop(job.jobId, { graceMs: 2_000 });
});

async function trainerMae(training: TrainingClient, samples: SampledCompletion[]): Promise<number> {
  const out = await training.forward(
    samples.map((c) => ({
      modelInput: c.fullTokens.slice(0, -1),
      lossFnInputs: {
        target_tokens: c.fullTokens.slice(1),
        weights: c.fullTokens.slice(1).map(() => 1),
      },
    })),
    'cross_entropy',
  );
  let s = 0;
  let n = 0;
  samples.forEach((c, i) => {
    const lp = Array.from(out.lossFnOutputs[i]?.logprobs.data ?? []).slice(c.promptLen - 1);
    const inf = c.inferenceLogprobs ?? [];
    expect(inf).toHaveLength(lp.length);
    lp.forEach((x, j) => {
      s += Math.abs(x - (inf[j] as number));
      n++;
    });
  });
  return s / n;
}

describe('ServiceClient sampling clients on a registry deployment', () => {
  it('hot-loads base then deltas on every replica; logprobs match the trainer', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'temper-sdk-sampling-'));
    launcher = testLauncher(join(tmp, 'jobs'));
    service = ServiceClient.fromConfig(
      {
        baseModel: BUNDLED_MODEL.name,
        loraRank: 0,
        learningRate: 5e-3,
        threads: 1,
        createDeployment: true,
        deploymentId: 'sampling',
        replicaCount: 2,
        account: 'sdk',
        cleanupTrainerOnClose: true,
        cleanupDeploymentOnClose: 'delete',
      },
      { launcher, deployments: registry },
    );
    const training = await service.createTrainingClient({
      baseModel: BUNDLED_MODEL.name,
      loraRank: 0,
    });
    const full = Array.from(Buffer.from('Q: 2+2= A: 4'));
    const step = async () => {
      await training.forwardBackward(
        [
          {
            modelInput: full.slice(0, -1),
            lossFnInputs: { target_tokens: full.slice(1), weights: full.slice(1).map(() => 1) },
          },
        ],
        'cross_entropy',
      );
      await training.optimStep({});
    };
    const s0 = await training.saveWeightsForSampler('pol', { checkpointType: 'base' });
    await step();
    const s1 = await training.saveWeightsForSampler('pol-1');
    await step();
    const s2 = await training.saveWeightsForSampler('pol-2');
    expect([s1.checkpointType, s2.checkpointType]).toEqual(['delta', 'delta']);
    expect(s1.previousSnapshotIdentity).toBe(s0.path);
    // the trainer's deltas are against its last base snapshot
    expect(s2.previousSnapshotIdentity).toBe(s0.path);

    // a fresh deployment: s0 (full), then s2 (arc_v2 against s0) on both replicas
    const sampler = await service.createDeploymentSampler({ modelPath: s2.uri });
    expect(service.deploymentId).toBe('sampling');
    const d = registry.get('accounts/sdk/deployments/sampling');
    expect(d.replicaCount).toBe(2);
    const hl = new HotLoadClient({ inferenceUrl: d.gatewayUrl as string, deployment: d.name });
    const st = await hl.status();
    expect(st.replicas).toHaveLength(2);
    expect(st.replicas.every((r) => r.readiness && r.current_snapshot_identity === s2.path)).toBe(
      true,
    );
    const prompt = full.slice(0, 8);
    const r2 = await sampler.sampleWithTokens({
      promptTokens: prompt,
      n: 4,
      maxTokens: 6,
      logprobs: true,
      seed: 3,
    });
    expect(r2.every((c) => c.snapshotIdentity === s2.path)).toBe(true);
    expect(await trainerMae(training, r2)).toBeLessThan(1e-4);

    // asking for the snapshot already served loads nothing
    await service.createDeploymentSampler({ modelPath: s2.uri });
    // another delta of the same base: applied where the replicas kept s0 (no base reload)
    const onS1 = await service.createSamplingClient({ modelPath: s1.uri });
    const r1 = await onS1.sampleWithTokens({ promptTokens: prompt, maxTokens: 4, seed: 1 });
    expect(r1[0]?.snapshotIdentity).toBe(s1.path);
    expect((await hl.status()).replicas.every((r) => r.current_snapshot_identity === s1.path)).toBe(
      true,
    );
    await service.createDeploymentSampler({ modelPath: s2.uri });
    expect((await hl.status()).replicas.every((r) => r.current_snapshot_identity === s2.path)).toBe(
      true,
    );
    const ledger = async () =>
      (
        (await (
          await fetch(`${d.gatewayUrl}/v1/${d.name}/ledger`, {
            headers: registry.authHeaders(d.name),
          })
        ).json()) as { snapshots: { identity: string }[] }
      ).snapshots.map((r) => r.identity);
    expect((await ledger()).filter((id) => id === s0.path)).toHaveLength(1);

    // a delta of a new base the deployment never loaded: the delta alone is refused, so the
    // chain is loaded (the new base, then the delta)
    const s3 = await training.saveWeightsForSampler('pol-3', { checkpointType: 'base' });
    await step();
    const s4 = await training.saveWeightsForSampler('pol-4');
    expect(s4.previousSnapshotIdentity).toBe(s3.path);
    const onS4 = await service.createDeploymentSampler({ modelPath: s4.uri });
    expect((await hl.status()).replicas.every((r) => r.current_snapshot_identity === s4.path)).toBe(
      true,
    );
    expect((await ledger()).slice(0, 2)).toEqual([s4.path, s3.path]);
    const r4 = await onS4.sampleWithTokens({
      promptTokens: prompt,
      n: 2,
      maxTokens: 6,
      logprobs: true,
      seed: 4,
    });
    expect(await trainerMae(training, r4)).toBeLessThan(1e-4);

    // a snapshot in another bucket, a missing snapshot: refused
    await expect(
      service.createDeploymentSampler({ modelPath: `file://${tmp}/elsewhere/x` }),
    ).rejects.toThrow(/another bucket/);
    await expect(
      service.createDeploymentSampler({ modelPath: `${s2.uri.replace(/[^/]+$/, '')}missing` }),
    ).rejects.toBeInstanceOf(TrainerError);

    await service.close();
    expect(registry.list('sdk').filter((x) => x.state !== 'DELETED')).toHaveLength(0);
  }, 180_000);
});

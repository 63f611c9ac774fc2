// End-to-end RL smoke: trainer pod -> saveWeightsForSampler (base) -> hot-load -> sample with
// logprobs -> importance-sampling policy step -> saveWeightsForSampler (arc_v2 delta) -> delta
// hot-load -> sample again; the deployment's logprobs match the trainer's on the same tokens.
// A second delta (against the base again) applies while the first is served.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BUNDLED_MODEL } from '../../src/catalog/bundled.js';
import { DeploymentRegistry } from '../../src/deployments/index.js';
import {
  createDeploymentSampler,
  DeploymentSampler,
  HotLoadClient,
  type SampledCompletion,
} from '../../src/sdk/deployment-sampler.js';
import { ServiceClient, type TrainingClient, type TrainingDatum } from '../../src/sdk/index.js';
import type { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import { testLauncher } from '../trainer/helpers.js';
import { baseDir, engineLogprobs, mae } from './fixtures.js';

const registry = new DeploymentRegistry(undefined, { openGateways: true });
let launcher: LocalProcessLauncher | undefined;
let service: ServiceClient | undefined;
afterAll(async () => {
  await registry.close();
  await service?.close();
  for (const job of (await launcher?.list()) ?? [])
    await launcher?.stop(job.jobId, { graceMs: 2_000 });
});

function datum(c: SampledCompletion, advantage: number): TrainingDatum {
  const full = c.fullTokens;
  const P = c.promptLen;
  const n = full.length - 1;
  const logprobs = Array.from({ length: n }, (_, j) =>
    j >= P - 1 ? (c.inferenceLogprobs?.[j - (P - 1)] ?? 0) : 0,
  );
  const advantages = Array.from({ length: n }, (_, j) => (j >= P - 1 ? advantage : 0));
  return {
    modelInput: full.slice(0, -1),
    lossFnInputs: { target_tokens: full.slice(1), logprobs, advantages },
  };
}

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
  const a: number[] = [];
  const b: number[] = [];
  samples.forEach((c, i) => {
    const lp = Array.from(out.lossFnOutputs[i]?.logprobs.data ?? []);
    a.push(...lp.slice(c.promptLen - 1));
    b.push(...(c.inferenceLogprobs ?? []));
  });
  expect(a).toHaveLength(b.length);
  return mae(a, b);
}

describe('RL loop through a hot-loaded deployment', () => {
  it('base snapshot, rollouts, policy step, delta snapshot, rollouts on the new policy', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'temper-rl-'));
    launcher = testLauncher(join(tmp, 'jobs'));
    service = ServiceClient.fromConfig(
      {
        baseModel: BUNDLED_MODEL.name,
        loraRank: 0,
        learningRate: 5e-3,
        threads: 1,
        createDeployment: false,
        cleanupTrainerOnClose: true,
      },
      { launcher },
    );
    const training = await service.createTrainingClient({
      baseModel: BUNDLED_MODEL.name,
      loraRank: 0,
    });
    const s0 = await training.saveWeightsForSampler('policy', { checkpointType: 'base' });
    const exportDir = fileURLToPath(s0.uri);
    expect(basename(exportDir)).toBe(s0.path);
    const d = await registry.create({
      account: 'rl',
      deploymentId: 'rollouts',
      baseModel: BUNDLED_MODEL.name,
      baseModelDir: baseDir,
      hotLoad: { bucketUrl: pathToFileURL(dirname(exportDir)).href },
    });
    const hl = new HotLoadClient({ inferenceUrl: d.gatewayUrl as string, deployment: d.name });
    const sampler = new DeploymentSampler({
      inferenceUrl: d.gatewayUrl as string,
      deployment: d.name,
    });
    await hl.hotloadAndWait(s0.path);

    const prompt = Array.from(Buffer.from('Q: 4+5= A:'));
    const r0 = await sampler.sampleWithTokens({
      promptTokens: prompt,
      n: 4,
      maxTokens: 8,
      logprobs: true,
      seed: 1,
    });
    expect(r0.every((c) => c.snapshotIdentity === s0.path)).toBe(true);
    const mae0 = await trainerMae(training, r0);
    expect(mae0).toBeLessThan(1e-4);

    // GRPO-style step: a toy reward that differs across the group, group-centred advantages
    const rewards = r0.map(
      (c) => new Set(c.fullTokens.slice(c.promptLen)).size + (c.fullTokens.at(-1) ?? 0) / 256,
    );
    const mean = rewards.reduce((x, y) => x + y, 0) / rewards.length;
    expect(new Set(rewards).size).toBeGreaterThan(1);
    await training.forwardBackward(
      r0.map((c, i) => datum(c, (rewards[i] as number) - mean)),
      'importance_sampling',
    );
    await training.optimStep({});

    const s1 = await training.saveWeightsForSampler('policy-1');
    expect(s1.checkpointType).toBe('delta');
    expect(s1.previousSnapshotIdentity).toBe(s0.path);
    expect(dirname(fileURLToPath(s1.uri))).toBe(dirname(exportDir));
    // the SDK path: a sampler on the delta snapshot (hot-loaded as arc_v2 against s0, waited for)
    const onS1 = await createDeploymentSampler({
      inferenceUrl: d.gatewayUrl as string,
      deployment: d.name,
      snapshot: s1,
    });
    expect((await hl.status()).replicas.every((r) => r.current_snapshot_identity === s1.path)).toBe(
      true,
    );

    const r1 = await onS1.sampleWithTokens({
      promptTokens: prompt,
      n: 4,
      maxTokens: 8,
      logprobs: true,
      seed: 1,
    });
    expect(r1.every((c) => c.snapshotIdentity === s1.path)).toBe(true);
    const mae1 = await trainerMae(training, r1);
    // the policy moved: the first rollout's tokens now score differently on the deployment
    const first = r0[0] as SampledCompletion;
    const [rescored] = await sampler.sampleWithTokens({
      promptTokens: first.fullTokens,
      maxTokens: 1,
      echo: true,
    });
    const moved = mae(
      rescored?.inferenceLogprobs?.slice(first.promptLen - 1, first.fullTokens.length - 1) ?? [],
      first.inferenceLogprobs ?? [],
    );
    expect(moved).toBeGreaterThan(1e-3);
    expect(mae1).toBeLessThan(1e-4);

    // a second step: its delta is taken against the base s0 again, while the replica serves
    // s1; the replica kept s0's weights and applies it there — one load, no base reload
    await training.forwardBackward(
      r1.map((c, i) => datum(c, i % 2 === 0 ? 1 : -1)),
      'importance_sampling',
    );
    await training.optimStep({});
    const s2 = await training.saveWeightsForSampler('policy-2');
    expect(s2.previousSnapshotIdentity).toBe(s0.path);
    const onS2 = await createDeploymentSampler({
      inferenceUrl: d.gatewayUrl as string,
      deployment: d.name,
      snapshot: s2,
    });
    const ledger = (await (await fetch(`${d.gatewayUrl}/v1/${d.name}/ledger`)).json()) as {
      snapshots: { identity: string }[];
    };
    expect(ledger.snapshots.map((r) => r.identity)).toEqual([s2.path, s1.path, s0.path]);
    const r2 = await onS2.sampleWithTokens({
      promptTokens: prompt,
      n: 4,
      maxTokens: 8,
      logprobs: true,
      seed: 1,
    });
    expect(r2.every((c) => c.snapshotIdentity === s2.path)).toBe(true);
    expect(await trainerMae(training, r2)).toBeLessThan(1e-4);
    console.log(
      JSON.stringify({
        rl_e2e_logprob_mae_base: mae0,
        rl_e2e_logprob_mae_delta: mae1,
        policy_shift: moved,
      }),
    );
  });

  it('LoRA: the PEFT adapter snapshot is merged onto the base on hot-load; logprobs match the trainer', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'temper-rl-lora-'));
    const lora = ServiceClient.fromConfig(
      {
        baseModel: BUNDLED_MODEL.name,
        loraRank: 4,
        learningRate: 2e-2,
        threads: 1,
        createDeployment: false,
        cleanupTrainerOnClose: true,
      },
      { launcher: launcher ?? testLauncher(join(tmp, 'jobs')) },
    );
    try {
      const training = await lora.createTrainingClient({
        baseModel: BUNDLED_MODEL.name,
        loraRank: 4,
      });
      const prompt = Array.from(Buffer.from('Say: hello'));
      const full = [...prompt, ...Array.from(Buffer.from(' world'))];
      // one SFT step so the adapter is not zero
      const sft: TrainingDatum = {
        modelInput: full.slice(0, -1),
        lossFnInputs: { target_tokens: full.slice(1), weights: full.slice(1).map(() => 1) },
      };
      await training.forwardBackward([sft], 'cross_entropy');
      await training.optimStep({});
      const saved = await training.saveWeightsForSampler('adapter', { checkpointType: 'base' });
      const dir = fileURLToPath(saved.uri);
      const d = await registry.create({
        account: 'rl',
        deploymentId: 'lora-rollouts',
        baseModel: BUNDLED_MODEL.name,
        baseModelDir: baseDir,
        hotLoad: { bucketUrl: pathToFileURL(dirname(dir)).href },
      });
      const sampler = await createDeploymentSampler({
        inferenceUrl: d.gatewayUrl as string,
        deployment: d.name,
        snapshot: saved,
      });
      const rollouts = await sampler.sampleWithTokens({
        promptTokens: prompt,
        n: 2,
        maxTokens: 6,
        logprobs: true,
        seed: 4,
      });
      expect(rollouts.every((c) => c.snapshotIdentity === saved.path)).toBe(true);
      const err = await trainerMae(training, rollouts);
      // and the adapter mattered: the base model scores these tokens differently
      const first = rollouts[0] as SampledCompletion;
      const base = await engineLogprobs(null, first.fullTokens);
      const shift = mae(Array.from(base).slice(first.promptLen - 1), first.inferenceLogprobs ?? []);
      expect(shift).toBeGreaterThan(1e-3);
      console.log(JSON.stringify({ rl_lora_logprob_mae: err, lora_vs_base_shift: shift }));
      expect(err).toBeLessThan(1e-4);
    } finally {
      await lora.close();
    }
  });
});

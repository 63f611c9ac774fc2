// Checkpoints through trainer pods: a pod killed with SIGKILL mid-run is resumed on a new pod
// from its last save_state (cross-job path), replaying the data from the saved cursor, and
// ends bitwise equal to an uninterrupted run; load_state resets the optimizer; LoRA sampler
// snapshots are PEFT adapters that load_adapter warm-starts from.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceClient, type TrainingClient, type TrainingDatum } from '../../src/sdk/index.js';
import type { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import {
  expectTrainerError,
  randomTokens,
  rng,
  tempDir,
  testLauncher,
  waitFor,
  writeTinyModelDir,
} from './helpers.js';

const STEPS = 6;

function batches(): TrainingDatum[][] {
  const r = rng(21);
  return Array.from({ length: STEPS }, () =>
    [0, 1].map(() => {
      const tokens = randomTokens(r, 12);
      return {
        modelInput: tokens.slice(0, -1),
        lossFnInputs: {
          target_tokens: tokens.slice(1),
          weights: tokens.slice(1).map((_, j) => (j > 2 ? 1 : 0)),
        },
      };
    }),
  );
}

const ADAM = { learningRate: 2e-2, beta2: 0.99, weightDecay: 0.01, gradClipNorm: 1 };

async function step(client: TrainingClient, batch: TrainingDatum[]): Promise<void> {
  await client.forwardBackward(batch, 'cross_entropy');
  await client.optimStep(ADAM, 'num_loss_tokens');
}

describe('trainer checkpoints', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;
  let modelDir = '';
  const data = batches();
  const probe = data[0]!;

  beforeAll(async () => {
    tmp = await tempDir('ckpt');
    modelDir = await writeTinyModelDir(`${tmp.dir}/model`);
    launcher = testLauncher(`${tmp.dir}/jobs`);
  });

  afterAll(async () => {
    for (const job of await launcher.list()) await launcher.stop(job.jobId, { graceMs: 2_000 });
    await tmp?.cleanup();
  });

  const service = (extra: Partial<Parameters<typeof ServiceClient.fromConfig>[0]> = {}) =>
    ServiceClient.fromConfig(
      { baseModel: modelDir, threads: 1, cleanupTrainerOnClose: true, ...extra },
      { launcher },
    );

  it('resumes a SIGKILLed run from its last save_state, bitwise equal to the uninterrupted run', async () => {
    // The uninterrupted run.
    const straight = service();
    const a = await straight.createTrainingClient();
    for (const b of data) await step(a, b);
    const expected = await a.forward(probe);
    expect((await a.info()).step).toBe(BigInt(STEPS));

    // The same run, saving every 2 steps with the data cursor in the name, killed at step 5.
    const doomed = service();
    const b = await doomed.createTrainingClient();
    let saved = '';
    for (let i = 0; i < 5; i++) {
      await step(b, data[i]!);
      if ((i + 1) % 2 === 0) saved = (await b.saveState(`step-${i + 1}`)).path;
    }
    expect(saved).toBe(`accounts/default/rlorTrainerJobs/${b.jobId}/checkpoints/step-4`);
    const pid = (await launcher.get(b.jobId))?.pid;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid!, 'SIGKILL');
    await waitFor(
      async () => (await launcher.get(b.jobId))?.state === 'failed',
      5_000,
      'pod to die',
    );
    await expectTrainerError(b.forward(probe), 'unavailable');
    await doomed.close();

    // A new trainer resumes from the dead job's newest checkpoint and replays from its cursor.
    const resumed = service();
    const c = await resumed.createTrainingClient();
    const path = await c.resolveCheckpointPath('step-4', b.jobId);
    expect(path).toBe(saved);
    await expectTrainerError(c.resolveCheckpointPath('step-5', b.jobId), 'checkpoint_not_found');
    const loaded = await c.loadStateWithOptimizer(path);
    expect(loaded.step).toBe(4);
    for (let i = 4; i < STEPS; i++) await step(c, data[i]!);
    const got = await c.forward(probe);
    expect(got.lossFnOutputs.map((o) => o.logprobs.data)).toEqual(
      expected.lossFnOutputs.map((o) => o.logprobs.data),
    );
    expect((await c.info()).step).toBe(BigInt(STEPS));

    // load_state restores the weights only: the optimizer starts again from step 0.
    const fresh = await c.loadState(path);
    expect(fresh.step).toBe(0);
    expect((await c.info()).step).toBe(0n);
    await step(c, data[4]!);
    expect((await c.info()).step).toBe(1n);
    await expectTrainerError(c.loadState('no-such-checkpoint'), 'checkpoint_not_found');
    expect(await c.listCheckpoints()).toEqual([]);

    await Promise.all([straight.close(), resumed.close()]);
  });

  it('LoRA: sampler snapshots are PEFT adapters; load_adapter warm-starts a new model from one', async () => {
    const svc = service({ loraRank: 4 });
    const policy = await svc.createTrainingClient();
    for (const b of data.slice(0, 3)) await step(policy, b);
    const trained = await policy.forward(probe);
    const snap = await policy.saveWeightsForSampler('lora-3');
    expect(snap.checkpointType).toBe('base');
    await expectTrainerError(policy.loadStateWithOptimizer(snap.path), 'not_resumable');

    // A second LoRA model on the same trainer, warm-started from the adapter.
    const other = ServiceClient.fromConfig(
      { baseModel: modelDir, loraRank: 4, trainerJobId: policy.jobId },
      { launcher },
    );
    const warm = await other.createTrainingClient();
    const before = await warm.forward(probe);
    expect(before.lossFnOutputs[0]!.logprobs.data).not.toEqual(
      trained.lossFnOutputs[0]!.logprobs.data,
    );
    await warm.loadAdapter(snap.uri);
    const after = await warm.forward(probe);
    expect(after.lossFnOutputs.map((o) => o.logprobs.data)).toEqual(
      trained.lossFnOutputs.map((o) => o.logprobs.data),
    );
    expect((await warm.info()).step).toBe(0n);
    await other.close();

    // A full-parameter model cannot take an adapter.
    const full = service();
    const f = await full.createTrainingClient();
    await expectTrainerError(f.loadAdapter(snap.uri), 'not_lora');
    await Promise.all([svc.close(), full.close()]);
  });
});

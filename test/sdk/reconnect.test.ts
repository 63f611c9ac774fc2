// Preemption through the SDK: kill -9 the trainer pod mid-run, reconnectAndWait resumes the
// same job (the launcher relaunches it), loadStateWithOptimizer restores the last saveState,
// the data is replayed from the saved cursor, and the final weights are bitwise those of an
// uninterrupted run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceClient, type TrainingClient, type TrainingDatum } from '../../src/sdk/index.js';
import type { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import {
  expectTrainerError,
  randomTokens,
  rng,
  tempDir,
  testLauncher,
  writeTinyModelDir,
} from '../trainer/helpers.js';

const STEPS = 6;

/** The batch of step `i`: a pure function of the cursor, so it can be replayed. */
function batchAt(i: number): TrainingDatum[] {
  const r = rng(1000 + i);
  return [0, 1, 2].map((j) => {
    const tokens = randomTokens(r, 8 + j);
    return {
      modelInput: { chunks: [{ type: 'encoded_text', tokens: tokens.slice(0, -1) }] },
      lossFnInputs: { target_tokens: tokens.slice(1), weights: tokens.slice(1).map(() => 1) },
    };
  });
}

async function step(training: TrainingClient, i: number): Promise<void> {
  await training.forwardBackward(batchAt(i), 'cross_entropy');
  await training.optimStep({ learningRate: 1e-2, weightDecay: 0.01 }, 'num_loss_tokens');
}

async function probe(training: TrainingClient): Promise<number[]> {
  const out = await training.forward(batchAt(99));
  return out.lossFnOutputs.flatMap((o) => Array.from(o.logprobs.data));
}

describe('reconnectAndWait after a pod is killed', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;
  let modelDir: string;

  beforeAll(async () => {
    tmp = await tempDir('reconnect');
    launcher = testLauncher(`${tmp.dir}/jobs`);
    modelDir = await writeTinyModelDir(`${tmp.dir}/tiny`, { seed: 21 });
  });

  afterAll(async () => {
    for (const job of await launcher.list()) await launcher.stop(job.jobId, { graceMs: 2_000 });
    await tmp?.cleanup();
  });

  const service = () =>
    ServiceClient.fromConfig(
      { baseModel: modelDir, loraRank: 0, threads: 1, cleanupTrainerOnClose: true },
      { launcher },
    );

  it('resumes the same job from the last saveState; the result is bitwise the uninterrupted run', async () => {
    const uninterrupted = (async () => {
      const s = service();
      try {
        const t = await s.createTrainingClient();
        for (let i = 0; i < STEPS; i++) await step(t, i);
        return await probe(t);
      } finally {
        await s.close();
      }
    })();

    const s = service();
    try {
      let training = await s.createTrainingClient();
      const jobId = training.jobId;
      let saved = { path: '', cursor: 0 };
      const killAt = 4;
      for (let i = 0; i < killAt; i++) {
        await step(training, i);
        if (i === 1) saved = { path: (await training.saveState('ckpt-2')).path, cursor: i + 1 };
      }
      const before = await launcher.get(jobId);
      process.kill(before!.pid!, 'SIGKILL');
      await expect(step(training, killAt)).rejects.toThrow();

      await expectTrainerError(
        s.reconnectAndWait('trainer-not-this-one', { timeoutS: 5 }),
        'invalid_argument',
      );
      training = await s.reconnectAndWait(jobId, { timeoutS: 60, maxWaitForResumableS: 10 });
      expect(training.jobId).toBe(jobId);
      const after = await launcher.get(jobId);
      expect(after?.state).toBe('running');
      expect(after?.pid).not.toBe(before?.pid);
      expect((await training.info()).step).toBe(0n);

      const restored = await training.loadStateWithOptimizer(saved.path);
      expect(restored.step).toBe(saved.cursor);
      for (let i = saved.cursor; i < STEPS; i++) await step(training, i);
      expect(await probe(training)).toEqual(await uninterrupted);

      // A healthy pod is kept: reconnecting again attaches without a relaunch.
      const again = await s.reconnectAndWait(undefined, { timeoutS: 10 });
      expect((await launcher.get(jobId))?.pid).toBe(after?.pid);
      expect((await again.info()).step).toBe(0n);
    } finally {
      await s.close();
    }
    expect((await launcher.list()).every((j) => j.state !== 'running')).toBe(true);
  }, 60_000);
});

// Data parallelism through real pods: 2- and 4-replica runs (batches sharded, gradients
// all-reduced between the pods at every optimStep: through shared memory, as these pods share
// a host) match the 1-pod run on the same global batches within float tolerance, keep their
// replicas bitwise identical, and a rerun with the collectives forced onto TCP is bitwise
// identical.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sftLoss } from '../../src/losses/index.js';
import { ServiceClient, type TrainingDatum } from '../../src/sdk/index.js';
import type { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import {
  expectTrainerError,
  randomTokens,
  rng,
  tempDir,
  testLauncher,
  writeTinyModelDir,
} from '../trainer/helpers.js';

function datum(tokens: number[], from: number): TrainingDatum {
  return {
    modelInput: { chunks: [{ type: 'encoded_text', tokens: tokens.slice(0, -1) }] },
    lossFnInputs: {
      target_tokens: tokens.slice(1),
      weights: tokens.slice(1).map((_, j) => (j >= from ? 1 : 0)),
    },
  };
}

interface RunResult {
  gradNorms: number[];
  losses: number[];
  probe: Float32Array[];
  tokens: number[];
  jobIds: string[];
}

describe('data-parallel trainer replicas', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;
  let modelDir: string;

  beforeAll(async () => {
    tmp = await tempDir('dp');
    launcher = testLauncher(`${tmp.dir}/jobs`);
    modelDir = await writeTinyModelDir(`${tmp.dir}/tiny`, { seed: 11 });
  });

  afterAll(async () => {
    for (const job of await launcher.list()) await launcher.stop(job.jobId, { graceMs: 2_000 });
    await tmp?.cleanup();
  });

  async function run(replicas: number, sharedMemoryCollectives = true): Promise<RunResult> {
    const service = ServiceClient.fromConfig(
      {
        baseModel: modelDir,
        loraRank: 0,
        threads: 1,
        trainerReplicaCount: replicas,
        cleanupTrainerOnClose: true,
        sharedMemoryCollectives,
      },
      { launcher },
    );
    try {
      const training = await service.createTrainingClient();
      expect(training.replicaCount).toBe(replicas);
      const r = rng(5);
      const out: RunResult = { gradNorms: [], losses: [], probe: [], tokens: [], jobIds: [] };
      out.jobIds = training.replicaJobIds;
      for (let step = 0; step < 3; step++) {
        // 5 datums of different lengths: 2 replicas get 2 and 3 (an uneven split).
        const batch = [0, 1, 2, 3, 4].map((i) => datum(randomTokens(r, 7 + 2 * i), 2));
        if (step === 1) {
          // A custom loss over the whole batch (run here), plus a built-in micro-batch.
          const c = await training.forwardBackwardCustom(batch, sftLoss());
          out.losses.push(c.loss);
          const b = await training.forwardBackward(batch.slice(0, 3), 'cross_entropy');
          out.losses.push(b.metrics['loss:sum']!);
        } else {
          const b = await training.forwardBackward(batch, 'cross_entropy');
          out.losses.push(b.metrics['loss:sum']!);
        }
        const s = await training.optimStep(
          { learningRate: 5e-3, gradClipNorm: 1, weightDecay: 0.01 },
          'num_loss_tokens',
        );
        out.gradNorms.push(s.gradNorm);
        out.tokens.push(s.numLossTokens);
        expect(s.step).toBe(step + 1);
      }
      // The same probe datum on every replica (one each): identical weights give bitwise
      // identical logprobs.
      const probeTokens = randomTokens(rng(99), 12);
      const probe = await training.forward(
        Array.from({ length: replicas }, () => datum(probeTokens, 0)),
      );
      out.probe = probe.lossFnOutputs.map((o) => o.logprobs.data);
      return out;
    } finally {
      await service.close();
    }
  }

  it('2 and 4 replicas match 1 pod within tolerance, stay identical, and rerun bitwise over TCP', async () => {
    const [one, two, four, fourAgain] = await Promise.all([run(1), run(2), run(4), run(4, false)]);
    expect(two.jobIds).toHaveLength(2);
    expect(two.jobIds[1]).toBe(`${two.jobIds[0]}-r1`);
    expect(four.jobIds).toHaveLength(4);
    for (const dp of [two, four]) {
      // Global normalisation: the token counts are the whole batch's, not a shard's.
      expect(dp.tokens).toEqual(one.tokens);
      // The same loss curve and grad norms within float32 summation-order noise.
      for (let i = 0; i < one.gradNorms.length; i++) {
        expect(Math.abs(dp.gradNorms[i]! - one.gradNorms[i]!)).toBeLessThan(
          1e-5 * one.gradNorms[i]!,
        );
      }
      for (let i = 0; i < one.losses.length; i++) {
        expect(Math.abs(dp.losses[i]! - one.losses[i]!)).toBeLessThan(
          1e-5 * Math.abs(one.losses[i]!),
        );
      }
      const p1 = one.probe[0]!;
      for (const p of dp.probe) {
        for (let j = 0; j < p1.length; j++) expect(Math.abs(p[j]! - p1[j]!)).toBeLessThan(1e-5);
        // Replicas hold the same weights, bitwise.
        expect(Array.from(p)).toEqual(Array.from(dp.probe[0]!));
      }
    }
    // A rerun is bitwise identical, with the collectives on the other transport (TCP).
    expect(fourAgain.gradNorms).toEqual(four.gradNorms);
    expect(fourAgain.losses).toEqual(four.losses);
    expect(Array.from(fourAgain.probe[0]!)).toEqual(Array.from(four.probe[0]!));
    // The weights did move.
    expect(one.gradNorms[0]).toBeGreaterThan(0);
  }, 90_000);

  it('checkpoints with replicas: rank 0 saves, every rank restores; no gradients anywhere is a typed error', async () => {
    const service = ServiceClient.fromConfig(
      { baseModel: modelDir, loraRank: 0, threads: 1, trainerReplicaCount: 2 },
      { launcher },
    );
    try {
      const training = await service.createTrainingClient();
      await expectTrainerError(training.optimStep({ learningRate: 1e-2 }), 'no_gradients');
      const r = rng(8);
      const batch = () => [0, 1, 2].map(() => datum(randomTokens(r, 9), 1));
      const probeData = [0, 1].map(() => datum(randomTokens(rng(4), 10), 0));
      const probe = async () =>
        (await training.forward(probeData)).lossFnOutputs.map((o) => Array.from(o.logprobs.data));
      await training.forwardBackward(batch(), 'cross_entropy');
      await training.optimStep({ learningRate: 1e-2 }, 'num_sequences');
      const saved = await training.saveState('dp-1');
      const atSave = await probe();
      // A single datum goes to rank 1 alone; rank 0 contributes zeros.
      await training.forwardBackward(batch().slice(0, 1), 'cross_entropy');
      const moved = await training.optimStep({ learningRate: 1e-2 }, 'num_sequences');
      expect(moved.numSequences).toBe(1);
      expect((await probe())[0]).not.toEqual(atSave[0]);
      const restored = await training.loadStateWithOptimizer(saved.path);
      expect(restored.step).toBe(1);
      const back = await probe();
      expect(back).toEqual(atSave);
      expect(back[1]).toEqual(back[0]);
      const sample = await training.sample([1, 2, 3], { maxTokens: 4, seed: 3 });
      expect(sample.sequences[0]?.tokens).toHaveLength(4);

      // Rank 1 is killed: reconnectAndWait relaunches it (rank 0 is healthy and kept), and
      // both restore the saved state.
      const [rank0, rank1] = training.replicaJobIds;
      const pid0 = (await launcher.get(rank0!))?.pid;
      process.kill((await launcher.get(rank1!))!.pid!, 'SIGKILL');
      const resumed = await service.reconnectAndWait(undefined, {
        timeoutS: 60,
        maxWaitForResumableS: 10,
      });
      expect(resumed.replicaJobIds).toEqual([rank0, rank1]);
      expect((await launcher.get(rank0!))?.pid).toBe(pid0);
      await resumed.loadStateWithOptimizer(saved.path);
      const again = (await resumed.forward(probeData)).lossFnOutputs.map((o) =>
        Array.from(o.logprobs.data),
      );
      expect(again).toEqual(atSave);
    } finally {
      await service.close({ cleanupTrainerOnClose: true });
    }
  }, 30_000);
});

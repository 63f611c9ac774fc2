// forwardBackwardCustom with output 'embedding' over real pods: the pod returns each datum's
// pooled final hidden state (mean or last), the loss runs here on one Vector per datum, and
// d(loss)/d(embedding) goes back. The embeddings and the gradient match the in-process
// engine's forwardHidden / backwardHidden on the same weights; a few steps lower the loss;
// data-parallel replicas give the same gradient as one pod.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TransformerModel } from '../../src/engine/model.js';
import { addAll, dot, type LossFn } from '../../src/losses/index.js';
import { ServiceClient, type TrainingDatum } from '../../src/sdk/index.js';
import type { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import {
  expectTrainerError,
  randomTokens,
  rng,
  TINY,
  tempDir,
  testLauncher,
  writeTinyModelDir,
} from '../trainer/helpers.js';

// Σ_i ‖e_i‖²: d/d(e_i) = 2·e_i.
const sumOfSquares: LossFn = (_data, es) => {
  const loss = addAll(es.map((e) => dot(e, e)));
  return { loss, metrics: { 'loss:sum': loss.item() } };
};

const ADAM = { learningRate: 1e-2, eps: 1e-3, beta1: 0.9, beta2: 0.999, weightDecay: 0 };

describe('forwardBackwardCustom output embedding over real pods', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;
  let modelDir: string;
  const r = rng(17);
  const tokens = [6, 3, 11].map((n) => randomTokens(r, n));
  // Token-only datums: embeddings read the whole model input, no targets needed.
  const data: TrainingDatum[] = tokens.map((t) => ({ modelInput: t, lossFnInputs: {} }));

  beforeAll(async () => {
    tmp = await tempDir('sdk-embed');
    launcher = testLauncher(`${tmp.dir}/jobs`);
    modelDir = await writeTinyModelDir(`${tmp.dir}/tiny`, { seed: 23 });
  });

  afterAll(async () => {
    for (const job of await launcher.list()) await launcher.stop(job.jobId, { graceMs: 2_000 });
    await tmp?.cleanup();
  });

  it.each(['mean', 'last'] as const)(
    '%s pooling: embeddings and gradients match the engine in process; training lowers the loss',
    async (pooling) => {
      const service = ServiceClient.fromConfig(
        { baseModel: modelDir, loraRank: 0, threads: 1, cleanupTrainerOnClose: true },
        { launcher },
      );
      try {
        const training = await service.createTrainingClient();
        const local = await TransformerModel.fromDirectory(modelDir, { threads: 1 });
        const seqs = tokens.map((t) => ({ tokens: t }));
        const hidden = TINY.hiddenSize;

        // Step 1 against the in-process engine with the same weights and the same loss.
        const first = await training.forwardBackwardCustom(data, sumOfSquares, {
          output: 'embedding',
          pooling,
        });
        expect(first.lossFnOutputType).toBe('embedding');
        expect(first.lossFnOutputs).toHaveLength(3);
        const e = local.forwardHidden(seqs, { pooling, saveForBackward: true });
        let localLoss = 0;
        first.lossFnOutputs.forEach((o, i) => {
          expect(o.embedding.shape).toEqual([hidden]);
          const want = e.subarray(i * hidden, (i + 1) * hidden);
          for (let j = 0; j < hidden; j++) {
            expect(Math.abs(o.embedding.data[j]! - want[j]!)).toBeLessThan(1e-5);
          }
        });
        for (const v of e) localLoss += v * v;
        expect(first.loss).toBeCloseTo(localLoss, 3);
        expect(first.numSequences).toBe(3);
        expect(first.numLossTokens).toBe(pooling === 'mean' ? 6 + 3 + 11 : 3);
        local.backwardHidden(e.map((v) => 2 * v));

        const step = await training.optimStep(ADAM);
        const localStep = local.optimStep(ADAM);
        expect(step.gradNorm).toBeGreaterThan(0);
        expect(Math.abs(step.gradNorm - localStep.gradNorm)).toBeLessThan(
          1e-4 * localStep.gradNorm,
        );
        // The whole gradient, through the same AdamW update (eps keeps it proportional to g):
        // the pod's weights after the step equal the in-process engine's.
        const saved = await training.saveWeightsForSampler('embed-1', { checkpointType: 'base' });
        const { fileURLToPath } = await import('node:url');
        const exported = await TransformerModel.fromDirectory(fileURLToPath(saved.uri), {
          threads: 1,
        });
        let maxDiff = 0;
        let maxDelta = 0;
        const before = await TransformerModel.fromDirectory(modelDir, { threads: 1 });
        for (const t of local.tensorInfo()) {
          if (t.name.includes('.lora_')) continue;
          const a = exported.getTensor(t.name);
          const b = local.getTensor(t.name);
          const w0 = before.getTensor(t.name);
          for (let j = 0; j < b.length; j++) {
            maxDiff = Math.max(maxDiff, Math.abs(a[j]! - b[j]!));
            maxDelta = Math.max(maxDelta, Math.abs(b[j]! - w0[j]!));
          }
        }
        expect(maxDelta).toBeGreaterThan(1e-4); // the step moved the weights
        expect(maxDiff).toBeLessThan(1e-6 + 1e-3 * maxDelta);

        // A few more steps: the loss goes down.
        const losses = [first.loss];
        for (let i = 0; i < 4; i++) {
          const res = await training.forwardBackwardCustom(data, sumOfSquares, {
            output: 'embedding',
            pooling,
          });
          losses.push(res.loss);
          await training.optimStep(ADAM);
        }
        expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.9);
        for (let i = 1; i < losses.length; i++) expect(losses[i]!).toBeLessThan(losses[i - 1]!);

        // logprobs keep working on the same model after embedding passes, and vice versa.
        const withTargets: TrainingDatum = {
          modelInput: tokens[0]!.slice(0, -1),
          lossFnInputs: {
            target_tokens: tokens[0]!.slice(1),
            weights: tokens[0]!.map(() => 1).slice(1),
          },
        };
        const lp = await training.forwardBackwardCustom([withTargets], (_d, lps) => {
          const loss = addAll(lps.map((v) => dot(v, v)));
          return { loss, metrics: {} };
        });
        expect(lp.lossFnOutputs[0]!.logprobs.shape).toEqual([tokens[0]!.length - 1]);
        await training.optimStep({ learningRate: 0 });

        // Typed errors; the queue moves on after each.
        await expectTrainerError(
          training.forwardBackwardCustom(
            [{ modelInput: [1, TINY.vocabSize + 3], lossFnInputs: {} }],
            sumOfSquares,
            { output: 'embedding', pooling },
          ),
          'out_of_vocab',
        );
        await expectTrainerError(
          training.forwardBackwardCustom(data, sumOfSquares, {
            output: 'embedding',
            pooling: 'max' as 'mean',
          }),
          'invalid_argument',
        );
        await expect(
          training.forwardBackwardCustom(
            data,
            () => {
              throw new Error('embedding loss broke');
            },
            { output: 'embedding', pooling },
          ),
        ).rejects.toThrow('embedding loss broke');
        await expectTrainerError(training.optimStep(ADAM), 'no_gradients');
        const again = await training.forwardBackwardCustom(data, sumOfSquares, {
          output: 'embedding',
          pooling,
        });
        expect(again.loss).toBeGreaterThan(0);
      } finally {
        await service.close();
      }
    },
    120_000,
  );

  it('data-parallel replicas give the one-pod gradient for an embedding loss', async () => {
    const gradNorms: number[] = [];
    for (const replicas of [1, 2]) {
      const service = ServiceClient.fromConfig(
        {
          baseModel: modelDir,
          loraRank: 0,
          threads: 1,
          trainerReplicaCount: replicas,
          cleanupTrainerOnClose: true,
        },
        { launcher },
      );
      try {
        const training = await service.createTrainingClient();
        expect(training.replicaCount).toBe(replicas);
        const res = await training.forwardBackwardCustom(data, sumOfSquares, {
          output: 'embedding',
          pooling: 'last',
        });
        expect(res.lossFnOutputs).toHaveLength(3);
        expect(res.numSequences).toBe(3);
        gradNorms.push((await training.optimStep(ADAM)).gradNorm);
      } finally {
        await service.close();
      }
    }
    expect(Math.abs(gradNorms[1]! - gradNorms[0]!)).toBeLessThan(1e-5 * gradNorms[0]!);
  }, 120_000);
});

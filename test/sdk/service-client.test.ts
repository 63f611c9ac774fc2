// The Training API client against real trainer pods launched by the local launcher: the
// seed's quickstart loop on the bundled model (custom SFT loss, 10 steps, the loss falls),
// reference and base clients, typed errors, and close() cleaning up what it launched.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLED_MODEL, bundledModelDir } from '../../src/catalog/bundled.js';
import { applyDeltaSnapshot, dirSnapshot } from '../../src/checkpoints/deltas/index.js';
import { TransformerModel } from '../../src/engine/model.js';
import { addAll, dot, type LossFn, neg, sftLoss } from '../../src/losses/index.js';
import { conversationDatum, ServiceClient, type TrainingDatum } from '../../src/sdk/index.js';
import { getRenderer } from '../../src/tokenizers/index.js';
import { loadModelTokenizer, modelRendererName } from '../../src/tokenizers/model-files.js';
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

describe('ServiceClient and TrainingClient over real pods', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;

  beforeAll(async () => {
    tmp = await tempDir('sdk');
    launcher = testLauncher(`${tmp.dir}/jobs`);
  });

  afterAll(async () => {
    for (const job of await launcher.list()) await launcher.stop(job.jobId, { graceMs: 2_000 });
    await tmp?.cleanup();
  });

  it('quickstart: custom SFT loop on the bundled model; reference and base clients; close stops every pod', async () => {
    const service = ServiceClient.fromConfig(
      {
        baseModel: BUNDLED_MODEL.name,
        loraRank: 0,
        learningRate: 1e-3,
        threads: 1,
        createDeployment: false,
        cleanupTrainerOnClose: true,
      },
      { launcher },
    );
    // Lazy: nothing runs until the first client call.
    expect(await launcher.list()).toEqual([]);
    expect(service.trainerJobId).toBeUndefined();
    const training = await service.createTrainingClient({
      baseModel: BUNDLED_MODEL.name,
      loraRank: 0,
    });
    expect(service.trainerJobId).toBe(training.jobId);
    expect(service.maxContextLength).toBe(512);
    await expectTrainerError(
      service.createTrainingClient({ baseModel: BUNDLED_MODEL.name, loraRank: 0 }),
      'duplicate_client',
    );
    await expectTrainerError(service.createTrainingClient({ loraRank: 8 }), 'invalid_argument');

    const dir = bundledModelDir();
    const renderer = getRenderer(await modelRendererName(dir), await loadModelTokenizer(dir));
    const datum = conversationDatum(renderer, [
      { role: 'user', content: 'What is the capital of France?' },
      { role: 'assistant', content: 'The capital of France is Paris.' },
    ]);
    const batch = [datum];
    const initial = await training.forward(batch, 'cross_entropy');

    const losses: number[] = [];
    for (let step = 0; step < 10; step++) {
      const result = await training.forwardBackwardCustom(batch, sftLoss());
      losses.push(result.metrics['ce_loss:mean']!);
      expect(result.numLossTokens).toBe(datum.weights.filter((w) => w > 0).length);
      const optim = await training.optimStep({
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0.01,
      });
      expect(optim.step).toBe(step + 1);
    }
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.5);

    // Full-parameter: the reference is a separate forward-only trainer owned by the service;
    // the base client is a frozen copy on the policy trainer. Both still see the base weights.
    const reference = await service.createReferenceClient(BUNDLED_MODEL.name);
    expect(service.referenceTrainerJobId).toBeDefined();
    expect(reference.jobId).toBe(service.referenceTrainerJobId);
    expect(reference.jobId).not.toBe(training.jobId);
    const base = await service.createBaseTrainingClient(BUNDLED_MODEL.name);
    expect(base.jobId).toBe(training.jobId);
    const ref = await reference.forward(batch, 'cross_entropy');
    const baseOut = await base.forward(batch);
    expect(ref.lossFnOutputs[0]!.logprobs.data).toEqual(initial.lossFnOutputs[0]!.logprobs.data);
    expect(baseOut.lossFnOutputs[0]!.logprobs.data).toEqual(
      initial.lossFnOutputs[0]!.logprobs.data,
    );
    expect(ref.metrics['loss:sum']).toBeCloseTo(initial.metrics['loss:sum']!, 10);
    await expectTrainerError(reference.forwardBackward(batch, 'cross_entropy'), 'forward_only');
    await expectTrainerError(base.optimStep({ learningRate: 1e-3 }), 'forward_only');

    // Save for the sampler: an HF model directory the engine loads back with the same logprobs.
    const saved = await training.saveWeightsForSampler('sft-final', { checkpointType: 'base' });
    expect(saved.path).toMatch(/^sft-final-[0-9a-f]{8}$/);
    expect(saved.checkpointType).toBe('base');
    const exportDir = fileURLToPath(saved.uri);
    const exported = await TransformerModel.fromDirectory(exportDir, { threads: 1 });
    const trained = await training.forward(batch);
    expect(exported.forward(batch)).toEqual(trained.lossFnOutputs[0]!.logprobs.data);
    expect(existsSync(join(exportDir, 'tokenizer_config.json'))).toBe(true);
    await training.saveState('step-10');
    expect(await training.listCheckpoints()).toEqual(['step-10']);
    await expectTrainerError(training.loadStateWithOptimizer(saved.path), 'not_resumable');
    // The quickstart's last step: find the checkpoint row, promote it, the model files exist.
    const rows = await service.listCheckpoints(service.trainerJobId);
    const entry = rows.find((row) => row.name.endsWith(`/checkpoints/${saved.path}`));
    expect(entry).toMatchObject({
      checkpointType: 'INFERENCE_BASE',
      promotable: true,
      name: saved.name,
    });
    expect(rows.find((row) => row.name.endsWith('/checkpoints/step-10'))).toMatchObject({
      checkpointType: 'TRAINING',
      resumable: true,
      promotable: false,
    });
    const model = await service.promoteCheckpoint({
      name: entry!.name,
      outputModelId: 'my-sft-model',
      baseModel: BUNDLED_MODEL.name,
    });
    expect(model.name).toBe('accounts/default/models/my-sft-model');
    const modelDir = join(
      fileURLToPath(launcher.checkpointUrl),
      'accounts/default/models/my-sft-model',
    );
    const promoted = await TransformerModel.fromDirectory(modelDir, { threads: 1 });
    expect(promoted.forward(batch)).toEqual(trained.lossFnOutputs[0]!.logprobs.data);
    await expectTrainerError(
      service.promoteCheckpoint({ name: entry!.name, outputModelId: 'Bad_Id' }),
      'invalid_argument',
    );

    // A later save defaults to an arc_v2 delta against the base; deltas are not promotable.
    await training.forwardBackwardCustom(batch, sftLoss());
    await training.optimStep({});
    const delta = await training.saveWeightsForSampler('sft-final-2');
    expect(delta.checkpointType).toBe('delta');
    expect(delta.previousSnapshotIdentity).toBe(saved.path);
    // Applied onto the base it was taken against, the delta is the trained model.
    const rebuilt = join(tmp.dir, 'rebuilt');
    await applyDeltaSnapshot({
      base: dirSnapshot(exportDir),
      delta: dirSnapshot(fileURLToPath(delta.uri)),
      target: { dir: rebuilt },
    });
    const afterDelta = await training.forward(batch);
    expect((await TransformerModel.fromDirectory(rebuilt, { threads: 1 })).forward(batch)).toEqual(
      afterDelta.lossFnOutputs[0]!.logprobs.data,
    );
    const deltaRow = (await service.listCheckpoints()).find((row) => row.name === delta.name);
    expect(deltaRow).toMatchObject({ checkpointType: 'INFERENCE_ARC_V2', promotable: false });
    await expectTrainerError(
      service.promoteCheckpoint({ name: delta.name, outputModelId: 'from-delta' }),
      'checkpoint_incompatible',
    );

    const jobs = [training.jobId, reference.jobId];
    await service.close();
    for (const id of jobs) expect((await launcher.get(id))?.state).toBe('stopped');
    await expectTrainerError(training.forward(batch), 'client_closed');
    await expectTrainerError(service.createReferenceClient(), 'client_closed');
    await service.close(); // idempotent
  });

  it('LoRA: built-in and custom cross-entropy agree, the base reference shares the pod, errors are typed, close keeps the trainer by default', async () => {
    const modelDir = await writeTinyModelDir(`${tmp.dir}/tiny`);
    const service = ServiceClient.fromConfig(
      { baseModel: modelDir, loraRank: 4, threads: 1, inactivityTimeout: '2m' },
      { launcher },
    );
    const training = await service.createTrainingClient();
    expect(training.loraRank).toBe(4);
    const reference = await service.createReferenceClient();
    expect(service.referenceTrainerJobId).toBeUndefined();
    expect(reference.jobId).toBe(training.jobId);

    const r = rng(3);
    const data: TrainingDatum[] = [0, 1].map((i) => {
      const tokens = randomTokens(r, 9 + i);
      return {
        modelInput: { chunks: [{ type: 'encoded_text', tokens: tokens.slice(0, -1) }] },
        lossFnInputs: {
          target_tokens: tokens.slice(1),
          weights: tokens.slice(1).map((_, j) => (j > 3 ? 1 : 0)),
        },
      };
    });
    // Σ -w·lp as a custom loss has exactly the built-in cross_entropy gradient.
    const custom: LossFn = (datums, lps) => {
      const loss = addAll(
        lps.map((lp, i) => neg(dot(lp, datums[i]!.loss_fn_inputs.weights as number[]))),
      );
      return { loss, metrics: { 'loss:sum': loss.item() } };
    };
    const before = await reference.forward(data);
    const builtin = await training.forwardBackward(data, 'cross_entropy');
    const s1 = await training.optimStep({ learningRate: 0 });
    const cust = await training.forwardBackwardCustom(data, custom);
    const s2 = await training.optimStep({ learningRate: 0 });
    expect(cust.loss).toBeCloseTo(builtin.metrics['loss:sum']!, 5);
    expect(s2.gradNorm).toBeCloseTo(s1.gradNorm, 6);
    expect(s1.gradNorm).toBeGreaterThan(0);

    // A loss that throws: its error surfaces, and the trainer's queue moves on.
    const broken: LossFn = () => {
      throw new Error('my loss is broken');
    };
    await expect(training.forwardBackwardCustom(data, broken)).rejects.toThrow('my loss is broken');
    await expectTrainerError(training.optimStep({ learningRate: 1e-2 }), 'no_gradients');
    const bad: TrainingDatum = {
      modelInput: [1, 2, 3],
      lossFnInputs: { target_tokens: [2, 3, TINY.vocabSize + 1], weights: [1, 1, 1] },
    };
    await expectTrainerError(training.forwardBackward([bad], 'cross_entropy'), 'out_of_vocab');
    const ragged: TrainingDatum = {
      modelInput: [1, 2, 3],
      lossFnInputs: { target_tokens: [2, 3], weights: [1, 1] },
    };
    await expectTrainerError(training.forward([ragged]), 'invalid_datum');
    await expectTrainerError(
      training.forwardBackwardCustom(data, custom, {
        output: 'embedding',
        pooling: 'max' as 'mean',
      }),
      'invalid_argument',
    );

    for (let i = 0; i < 3; i++) {
      await training.forwardBackward(data, 'cross_entropy');
      await training.optimStep({ learningRate: 5e-2 }, 'num_loss_tokens');
    }
    const after = await reference.forward(data);
    expect(after.lossFnOutputs.map((o) => o.logprobs.data)).toEqual(
      before.lossFnOutputs.map((o) => o.logprobs.data),
    );
    const trained = await training.forward(data);
    expect(trained.lossFnOutputs[0]!.logprobs.data).not.toEqual(
      before.lossFnOutputs[0]!.logprobs.data,
    );
    const sample = await training.sample([1, 2, 3], {
      maxTokens: 4,
      numSamples: 2,
      temperature: 0.7,
      seed: 1,
    });
    expect(sample.sequences).toHaveLength(2);
    expect(sample.sequences[0]!.tokens).toHaveLength(4);

    // cleanupTrainerOnClose defaults to false: the trainer survives close() and can be reattached.
    const jobId = training.jobId;
    await service.close();
    expect((await launcher.get(jobId))?.state).toBe('running');
    const again = ServiceClient.fromConfig(
      { baseModel: modelDir, loraRank: 4, trainerJobId: jobId },
      { launcher },
    );
    const resumed = await again.createTrainingClient({ modelId: training.modelId });
    expect(resumed.nextSeqId).toBe(training.nextSeqId);
    const info = await resumed.info();
    expect(Number(info.step)).toBe(5);
    await again.close({ cleanupTrainerOnClose: true }); // reattached, not launched: still kept
    expect((await launcher.get(jobId))?.state).toBe('running');
    await launcher.stop(jobId);
  });
});

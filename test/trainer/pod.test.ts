// A real trainer pod (subprocess, `temper trainer serve`) over real gRPC on loopback, on a tiny
// random model: losses, the custom two-phase path, optim_step normalisation, ordering and
// idempotency, typed errors, sampling, and a LoRA policy with its base reference on one engine.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointType,
  GradAccumulationNormalization,
  ServingStatus,
  StopReason,
} from '../../src/gen/temper/trainer/v1/trainer_pb.js';
import { builtinLoss, forward as lossForward } from '../../src/losses/index.js';
import { createTrainerClient, type TrainerClient } from '../../src/trainer/client.js';
import type { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import {
  decodeBatched,
  decodeFloat32,
  decodeInt32,
  encodeBatched,
  encodeInt32,
} from '../../src/trainer/wire.js';
import {
  expectGrpcError,
  randomTokens,
  rng,
  TINY,
  tempDir,
  testLauncher,
  wireDatum,
  writeTinyModelDir,
} from './helpers.js';

const V = TINY.vocabSize;

describe('trainer pod over gRPC', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;
  let jobId = '';
  let client: TrainerClient;
  let session = '';
  let modelSeq = 1;

  const r = rng(11);
  const batch = [0, 1, 2].map((i) => {
    const tokens = randomTokens(r, 6 + i);
    const targets = [...tokens.slice(1), Math.floor(r() * V)];
    const weights = targets.map((_, j) => (j >= 2 ? 1 : 0));
    return { tokens, targets, weights };
  });
  const ceData = batch.map((d) => wireDatum(d.tokens, d.targets, { weights: d.weights }));

  async function newModel(extra: Record<string, unknown> = {}) {
    const res = await client.createModel({ sessionId: session, modelSeqId: modelSeq++, ...extra });
    return res.modelId;
  }

  function logprobsOf(
    output: { lossFnOutputs: Record<string, never> } | undefined,
  ): Float32Array[] {
    const lp = (
      output as unknown as { lossFnOutputs: { logprobs: Parameters<typeof decodeBatched>[0] } }
    ).lossFnOutputs.logprobs;
    return decodeBatched(lp, 'logprobs').parts as Float32Array[];
  }

  beforeAll(async () => {
    tmp = await tempDir('pod');
    const modelDir = await writeTinyModelDir(`${tmp.dir}/model`);
    launcher = testLauncher(`${tmp.dir}/jobs`);
    const endpoint = await launcher.launch({
      baseModel: modelDir,
      threads: 1,
      inactivityTimeoutMs: 0,
      maxModels: 32,
    });
    jobId = endpoint.jobId;
    client = createTrainerClient(endpoint.address, endpoint.token);
    session = (await client.createSession({ tags: ['test'] })).sessionId;
  });

  afterAll(async () => {
    client?.close();
    if (jobId) await launcher.stop(jobId);
    await tmp?.cleanup();
  });

  it('reports health and creates models idempotently per (session, model_seq_id)', async () => {
    const h = await client.health({});
    expect(h.status).toBe(ServingStatus.SERVING);
    expect(h.trainerJobId).toBe(jobId);
    expect(h.vocabSize).toBe(V);
    expect(h.maxContextLength).toBe(TINY.maxPositions);
    const seq = modelSeq++;
    const a = await client.createModel({ sessionId: session, modelSeqId: seq });
    const b = await client.createModel({ sessionId: session, modelSeqId: seq });
    expect(b.modelId).toBe(a.modelId);
    expect(a.info?.nextSeqId).toBe(1);
    expect(a.info?.isLora).toBe(false);
    expect(Number(a.info?.trainableParameters)).toBeGreaterThan(1000);
  });

  it('runs every built-in loss; the pod reports the loss src/losses computes on its logprobs', async () => {
    const rl = batch.map((d) => {
      const q = d.targets.map(() => -3 + r());
      const adv = d.targets.map((_, j) => (j >= 2 ? r() - 0.5 : 0));
      return wireDatum(d.tokens, d.targets, { logprobs: q, advantages: adv });
    });
    const cases: [string, typeof ceData, Record<string, number>][] = [
      ['cross_entropy', ceData, {}],
      ['importance_sampling', rl, {}],
      ['ppo', rl, { clip_low_threshold: 0.9, clip_high_threshold: 1.1 }],
      ['cispo', rl, {}],
      ['dro', rl, { beta: 0.1 }],
    ];
    for (const [loss, data, config] of cases) {
      const modelId = await newModel();
      const res = await client.forwardBackward({
        modelId,
        seqId: 1,
        data,
        lossFn: loss,
        lossFnConfig: config,
      });
      const lps = logprobsOf(res.output as never);
      expect(lps.map((l) => l.length)).toEqual(batch.map((d) => d.tokens.length));
      // The same loss, computed here from the returned logprobs and the datums.
      const local = lossForward(
        builtinLoss(loss, config),
        data.map((d, i) => ({
          loss_fn_inputs: Object.fromEntries(
            Object.entries(d.lossFnInputs).map(([k, t]) => [
              k,
              k === 'target_tokens' ? batch[i]!.targets : Array.from(decodeFloat32(t.data!, k)),
            ]),
          ),
        })),
        lps,
      );
      expect(res.output?.metrics['loss:sum']).toBeCloseTo(local.metrics['loss:sum']!, 6);
      const step = await client.optimStep({
        modelId,
        seqId: 2,
        adamParams: { learningRate: 1e-2 },
      });
      expect(step.gradNorm, loss).toBeGreaterThan(0);
      expect(Number(step.step)).toBe(1);
    }
  });

  it('built-in cross_entropy and the custom two-phase path give the same update', async () => {
    const builtin = await newModel();
    const custom = await newModel();
    await client.forwardBackward({
      modelId: builtin,
      seqId: 1,
      data: ceData,
      lossFn: 'cross_entropy',
    });
    const fwd = await client.forwardBackwardCustom({
      modelId: custom,
      seqId: 1,
      data: batch.map((d) => wireDatum(d.tokens, d.targets)),
    });
    expect(logprobsOf(fwd.output as never).map((l) => l.length)).toEqual([6, 7, 8]);
    // Custom loss -Σ w·lp: d(loss)/d(lp) = -w.
    const bwd = await client.backward({
      modelId: custom,
      seqId: 2,
      forwardSeqId: 1,
      dLogprobs: encodeBatched(
        batch.map((d) => d.weights.map((w) => -w)),
        'float32',
      ),
    });
    expect(Number(bwd.numLossTokens)).toBe(
      batch.reduce((n, d) => n + d.weights.filter((w) => w).length, 0),
    );
    expect(Number(bwd.numSequences)).toBe(3);
    const adam = { learningRate: 1e-2, weightDecay: 0.01, gradClipNorm: 1 };
    const a = await client.optimStep({ modelId: builtin, seqId: 2, adamParams: adam });
    const b = await client.optimStep({ modelId: custom, seqId: 3, adamParams: adam });
    expect(b.gradNorm).toBe(a.gradNorm);
    const logprobsAfter = async (modelId: string, seqId: number) =>
      logprobsOf((await client.forward({ modelId, seqId, data: ceData })).output as never);
    const la = await logprobsAfter(builtin, 3);
    const lb = await logprobsAfter(custom, 4);
    expect(lb).toEqual(la);
  });

  it('normalises accumulated gradients: raw sums with num_loss_tokens equal pre-divided weights', async () => {
    const tokens = batch.reduce((n, d) => n + d.weights.filter((w) => w !== 0).length, 0);
    const raw = await newModel();
    const mean = await newModel();
    const meanData = batch.map((d) =>
      wireDatum(d.tokens, d.targets, { weights: d.weights.map((w) => w / tokens) }),
    );
    // Two micro-batches each.
    await client.forwardBackward({
      modelId: raw,
      seqId: 1,
      data: ceData.slice(0, 2),
      lossFn: 'cross_entropy',
    });
    await client.forwardBackward({
      modelId: raw,
      seqId: 2,
      data: ceData.slice(2),
      lossFn: 'cross_entropy',
    });
    await client.forwardBackward({
      modelId: mean,
      seqId: 1,
      data: meanData.slice(0, 2),
      lossFn: 'cross_entropy',
    });
    await client.forwardBackward({
      modelId: mean,
      seqId: 2,
      data: meanData.slice(2),
      lossFn: 'cross_entropy',
    });
    const adam = { learningRate: 5e-3, gradClipNorm: 0.5 };
    const a = await client.optimStep({
      modelId: raw,
      seqId: 3,
      adamParams: adam,
      gradAccumulationNormalization: GradAccumulationNormalization.NUM_LOSS_TOKENS,
    });
    const b = await client.optimStep({ modelId: mean, seqId: 3, adamParams: adam });
    expect(Number(a.numLossTokens)).toBe(tokens);
    expect(a.gradScale).toBeCloseTo(1 / tokens, 12);
    expect(a.gradNorm).toBeCloseTo(b.gradNorm, 5);
    // A second step exercises the rescaled optimizer moments.
    await client.forwardBackward({ modelId: raw, seqId: 4, data: ceData, lossFn: 'cross_entropy' });
    await client.forwardBackward({
      modelId: mean,
      seqId: 4,
      data: meanData,
      lossFn: 'cross_entropy',
    });
    await client.optimStep({
      modelId: raw,
      seqId: 5,
      adamParams: adam,
      gradAccumulationNormalization: GradAccumulationNormalization.NUM_LOSS_TOKENS,
    });
    await client.optimStep({ modelId: mean, seqId: 5, adamParams: adam });
    const la = logprobsOf(
      (await client.forward({ modelId: raw, seqId: 6, data: ceData })).output as never,
    );
    const lb = logprobsOf(
      (await client.forward({ modelId: mean, seqId: 6, data: ceData })).output as never,
    );
    for (const [i, l] of la.entries()) {
      for (const [j, x] of l.entries()) expect(x).toBeCloseTo(lb[i]![j]!, 4);
    }
  });

  it('executes operations in seq_id order and answers repeats without re-running them', async () => {
    const inOrder = await newModel();
    const shuffled = await newModel();
    const adam = { learningRate: 2e-2 };
    await client.forwardBackward({
      modelId: inOrder,
      seqId: 1,
      data: ceData,
      lossFn: 'cross_entropy',
    });
    await client.optimStep({ modelId: inOrder, seqId: 2, adamParams: adam });
    const expected = await client.forward({ modelId: inOrder, seqId: 3, data: ceData });
    // The same three operations, sent last-first and all at once; and every one twice.
    const f3 = client.forward({ modelId: shuffled, seqId: 3, data: ceData });
    const s2 = client.optimStep({ modelId: shuffled, seqId: 2, adamParams: adam });
    const b1 = client.forwardBackward({
      modelId: shuffled,
      seqId: 1,
      data: ceData,
      lossFn: 'cross_entropy',
    });
    const s2again = client.optimStep({ modelId: shuffled, seqId: 2, adamParams: adam });
    const [got, step, , stepAgain] = await Promise.all([f3, s2, b1, s2again]);
    expect(logprobsOf(got.output as never)).toEqual(logprobsOf(expected.output as never));
    expect(stepAgain).toEqual(step);
    const late = await client.optimStep({ modelId: shuffled, seqId: 2, adamParams: adam });
    expect(late).toEqual(step);
    const info = await client.getInfo({ modelId: shuffled });
    expect(Number(info.info?.step)).toBe(1);
    expect(info.info?.nextSeqId).toBe(4);
    await expectGrpcError(
      client.forward({ modelId: shuffled, seqId: 2, data: ceData }),
      grpc.status.FAILED_PRECONDITION,
      'seq_conflict',
    );
  });

  it('answers bad requests with typed errors and keeps the queue moving', async () => {
    const m = await newModel();
    await expectGrpcError(
      client.forward({ modelId: 'model-nope', seqId: 1, data: ceData }),
      grpc.status.NOT_FOUND,
      'unknown_model',
    );
    await expectGrpcError(
      client.createModel({ sessionId: 'session-nope', modelSeqId: 1 }),
      grpc.status.NOT_FOUND,
      'unknown_session',
    );
    await expectGrpcError(
      client.heartbeat({ sessionId: 'session-nope' }),
      grpc.status.NOT_FOUND,
      'unknown_session',
    );
    const d = batch[0]!;
    let seq = 1;
    await expectGrpcError(
      client.forwardBackward({
        modelId: m,
        seqId: seq++,
        data: [wireDatum(d.tokens, d.targets.slice(1), { weights: d.weights.slice(1) })],
        lossFn: 'cross_entropy',
      }),
      grpc.status.INVALID_ARGUMENT,
      'invalid_datum',
    );
    await expectGrpcError(
      client.forwardBackward({
        modelId: m,
        seqId: seq++,
        data: [wireDatum(d.tokens, d.targets, { weights: d.weights.slice(1) })],
        lossFn: 'cross_entropy',
      }),
      grpc.status.INVALID_ARGUMENT,
      'invalid_loss_input',
    );
    const oov = await expectGrpcError(
      client.forwardBackward({
        modelId: m,
        seqId: seq++,
        data: [wireDatum([...d.tokens.slice(0, -1), V + 5], d.targets, { weights: d.weights })],
        lossFn: 'cross_entropy',
      }),
      grpc.status.INVALID_ARGUMENT,
      'out_of_vocab',
    );
    expect(oov.details).toContain(`${V + 5} is outside the vocabulary [0, ${V})`);
    await expectGrpcError(
      client.forwardBackward({ modelId: m, seqId: seq++, data: ceData, lossFn: 'kl_magic' }),
      grpc.status.INVALID_ARGUMENT,
      'unknown_loss',
    );
    await expectGrpcError(
      client.forwardBackward({
        modelId: m,
        seqId: seq++,
        data: ceData,
        lossFn: 'ppo',
        lossFnConfig: { clip: 2 },
      }),
      grpc.status.INVALID_ARGUMENT,
      'invalid_loss_config',
    );
    await expectGrpcError(
      client.optimStep({ modelId: m, seqId: seq++, adamParams: { learningRate: 1e-3 } }),
      grpc.status.FAILED_PRECONDITION,
      'no_gradients',
    );
    await expectGrpcError(
      client.backward({
        modelId: m,
        seqId: seq++,
        forwardSeqId: 1,
        dLogprobs: encodeBatched([[0]], 'float32'),
      }),
      grpc.status.FAILED_PRECONDITION,
      'no_pending_forward',
    );
    await expectGrpcError(
      client.saveWeightsForSampler({
        modelId: m,
        seqId: seq++,
        name: 's',
        checkpointType: CheckpointType.DELTA,
      }),
      grpc.status.FAILED_PRECONDITION,
      'no_base_snapshot',
    );
    await expectGrpcError(
      client.loadStateWithOptimizer({ modelId: m, seqId: seq++, path: 'never-saved' }),
      grpc.status.NOT_FOUND,
      'checkpoint_not_found',
    );
    await expectGrpcError(
      client.loadState({ modelId: m, seqId: seq++, path: '../../etc/passwd' }),
      grpc.status.INVALID_ARGUMENT,
      'invalid_argument',
    );
    // A custom forward whose backward has the wrong length is rejected and changes nothing;
    // the model then trains normally.
    const fwdSeq = seq++;
    await client.forwardBackwardCustom({ modelId: m, seqId: fwdSeq, data: ceData });
    await expectGrpcError(
      client.backward({
        modelId: m,
        seqId: seq++,
        forwardSeqId: fwdSeq,
        dLogprobs: encodeBatched([[1, 2]], 'float32'),
      }),
      grpc.status.INVALID_ARGUMENT,
      'invalid_datum',
    );
    await client.backward({
      modelId: m,
      seqId: seq++,
      forwardSeqId: fwdSeq,
      dLogprobs: encodeBatched(
        batch.map((x) => x.weights.map((w) => -w)),
        'float32',
      ),
    });
    const step = await client.optimStep({
      modelId: m,
      seqId: seq++,
      adamParams: { learningRate: 1e-3 },
    });
    expect(Number(step.step)).toBe(1);
  });

  it('samples, and a forward-only model refuses training operations', async () => {
    const ref = await newModel({ forwardOnly: true });
    const prompt = encodeInt32([1, 2, 3]);
    const greedy = { maxTokens: 5, temperature: 0, seed: 3n, stopTokens: [] };
    const a = await client.sample({
      modelId: ref,
      seqId: 1,
      prompt,
      numSamples: 2,
      samplingParams: greedy,
      promptLogprobs: true,
    });
    expect(a.sequences).toHaveLength(2);
    const toks = a.sequences.map((s) => Array.from(decodeInt32(s.tokens, 't')));
    expect(toks[0]).toHaveLength(5);
    expect(toks[1]).toEqual(toks[0]);
    expect(a.sequences[0]!.stopReason).toBe(StopReason.LENGTH);
    expect(toks[0]!.every((t) => t >= 0 && t < V)).toBe(true);
    const promptLps = decodeFloat32(a.promptLogprobs!, 'prompt logprobs');
    expect(promptLps).toHaveLength(3);
    expect(Number.isNaN(promptLps[0])).toBe(true);
    expect(promptLps[1]).toBeLessThan(0);
    await expectGrpcError(
      client.forwardBackward({ modelId: ref, seqId: 2, data: ceData, lossFn: 'cross_entropy' }),
      grpc.status.FAILED_PRECONDITION,
      'forward_only',
    );
    await expectGrpcError(
      client.sample({
        modelId: ref,
        seqId: 3,
        prompt: encodeInt32([1, V]),
        samplingParams: greedy,
      }),
      grpc.status.INVALID_ARGUMENT,
      'out_of_vocab',
    );
  });

  it('serves a LoRA policy and its frozen base reference from one engine', async () => {
    const policy = await newModel({ lora: { rank: 4, alpha: 8 } });
    const base = await client.createModel({
      sessionId: session,
      modelSeqId: modelSeq++,
      forwardOnly: true,
      shareBaseWithModelId: policy,
    });
    expect(base.info?.sharesBaseWithModelId).toBe(policy);
    const frozen = await newModel({ forwardOnly: true });
    const before = logprobsOf(
      (await client.forward({ modelId: frozen, seqId: 1, data: ceData })).output as never,
    );
    let pseq = 1;
    for (let i = 0; i < 3; i++) {
      // Phase 1, then a reference forward on the shared engine, then phase 2: the pod
      // recomputes the policy's activations for the backward pass.
      const f = pseq++;
      await client.forwardBackwardCustom({ modelId: policy, seqId: f, data: ceData });
      await client.forward({ modelId: base.modelId, seqId: i + 1, data: ceData });
      await client.backward({
        modelId: policy,
        seqId: pseq++,
        forwardSeqId: f,
        dLogprobs: encodeBatched(
          batch.map((x) => x.weights.map((w) => -w)),
          'float32',
        ),
      });
      await client.optimStep({
        modelId: policy,
        seqId: pseq++,
        adamParams: { learningRate: 5e-2 },
      });
    }
    const ref = logprobsOf(
      (await client.forward({ modelId: base.modelId, seqId: 4, data: ceData })).output as never,
    );
    const pol = logprobsOf(
      (await client.forward({ modelId: policy, seqId: pseq++, data: ceData })).output as never,
    );
    expect(ref).toEqual(before);
    const gain = (l: Float32Array[]) =>
      l.reduce((s, x, i) => s + x.reduce((t, v, j) => t + v * batch[i]!.weights[j]!, 0), 0);
    expect(gain(pol)).toBeGreaterThan(gain(before) + 0.1);
  });
});

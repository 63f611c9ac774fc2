// A trainer job chooses the engine settings of its pod (baseDtype, recompute): the launcher
// checks them before a process starts, the pod runs every model with them and records them in
// its state file. Real pods (`temper trainer serve` subprocesses) over real gRPC.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTrainerClient, type TrainerClient } from '../../src/trainer/client.js';
import type { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import { decodeBatched } from '../../src/trainer/wire.js';
import {
  expectGrpcError,
  randomTokens,
  rng,
  tempDir,
  testLauncher,
  wireDatum,
  writeTinyModelDir,
} from './helpers.js';

describe('trainer pod engine settings', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;
  let modelDir = '';
  const pods: { jobId: string; client: TrainerClient; session: string }[] = [];

  beforeAll(async () => {
    tmp = await tempDir('engine-settings');
    modelDir = await writeTinyModelDir(join(tmp.dir, 'model'));
    launcher = testLauncher(join(tmp.dir, 'jobs'));
    for (const engine of [undefined, { baseDtype: 'bfloat16' as const, recompute: true }]) {
      const endpoint = await launcher.launch({
        baseModel: modelDir,
        threads: 1,
        inactivityTimeoutMs: 0,
        ...(engine ? { engine } : {}),
      });
      const client = createTrainerClient(endpoint.address, endpoint.token);
      const session = (await client.createSession({ tags: ['test'] })).sessionId;
      pods.push({ jobId: endpoint.jobId, client, session });
    }
  });

  afterAll(async () => {
    for (const p of pods) {
      p.client.close();
      await launcher.stop(p.jobId);
    }
    await tmp.cleanup();
  });

  it('refuses a bad setting before a pod starts, naming it', async () => {
    await expect(
      launcher.launch({ baseModel: modelDir, engine: { baseDtype: 'float16' as 'float32' } }),
    ).rejects.toThrow(/engine\.baseDtype: baseDtype must be 'float32' or 'bfloat16'/);
    await expect(
      launcher.launch({ baseModel: modelDir, engine: { dtype: 'bf16' } as never }),
    ).rejects.toThrow(/unknown engine setting\(s\) 'dtype'/);
    expect((await launcher.list()).length).toBe(2);
  });

  it('records the settings in the state file', async () => {
    const state = async (jobId: string) =>
      JSON.parse(await readFile(join(tmp.dir, 'jobs', jobId, 'state.json'), 'utf8')).engine;
    expect(await state(pods[0]!.jobId)).toEqual({ baseDtype: 'float32', recompute: false });
    expect(await state(pods[1]!.jobId)).toEqual({ baseDtype: 'bfloat16', recompute: true });
  });

  it('builds LoRA models with a bf16 base and refuses full-parameter ones there', async () => {
    const r = rng(3);
    const tokens = randomTokens(r, 12);
    const data = [wireDatum(tokens, [...tokens.slice(1), 1], { weights: tokens.map(() => 1) })];
    const logprobs = async (p: (typeof pods)[number]) => {
      const { modelId } = await p.client.createModel({
        sessionId: p.session,
        modelSeqId: 1,
        lora: { rank: 4, alpha: 8 },
      });
      const res = await p.client.forwardBackward({
        modelId,
        seqId: 1,
        data,
        lossFn: 'cross_entropy',
      });
      const out = res.output as unknown as {
        lossFnOutputs: { logprobs: Parameters<typeof decodeBatched>[0] };
      };
      return decodeBatched(out.lossFnOutputs.logprobs, 'logprobs').parts[0] as Float32Array;
    };
    // The tiny model's float32 weights rounded to bf16 move the logprobs a little.
    const f32 = await logprobs(pods[0]!);
    const bf16 = await logprobs(pods[1]!);
    expect(bf16).not.toEqual(f32);
    for (let i = 0; i < f32.length; i++) expect(Math.abs(bf16[i]! - f32[i]!)).toBeLessThan(0.02);
    const full = pods[1]!.client.createModel({
      sessionId: pods[1]!.session,
      modelSeqId: 2,
      lora: { rank: 0 },
    });
    const error = await expectGrpcError(full, grpc.status.INVALID_ARGUMENT, 'invalid_argument');
    expect(error.details).toMatch(/baseDtype 'bfloat16' needs a LoRA adapter/);
  });
});

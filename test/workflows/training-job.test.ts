// Managed SFT/DPO jobs end to end on the real platform parts: the Temporal dev server, the
// SQLite store, local trainer pods training the bundled model, promotion to a model.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRef } from '../../src/control-plane/orchestrator.js';
import { workflowIdOf } from '../../src/workflows/types.js';
import { startTestPlatform, type TestPlatform, waitFor } from '../support/platform.js';
import { BUNDLED_BASE, createStoredSftJob, resumeStoredJob } from '../support/stored-jobs.js';

let platform: TestPlatform;

beforeAll(async () => {
  platform = await startTestPlatform();
}, 120_000);

afterAll(async () => {
  await platform?.close();
});

const body = (ref: JobRef) => platform.jobBody(ref);
const modelWeights = (id: string) => platform.modelWeights('acme', id);

describe('managed SFT job workflow', () => {
  let uninterrupted: Buffer;

  it('runs to completion, records progress and metrics, and promotes the output model', async () => {
    const ref = await createStoredSftJob(platform, 'sft-plain');
    await platform.orchestrator.start(ref);
    await platform.orchestrator.start(ref); // idempotent: one workflow per job
    const result = await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    const job = await body(ref);
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    expect(job.outputModel).toBe('accounts/acme/models/sft-plain-model');
    const progress = job.jobProgress as { step: number; totalSteps: number; percent: number };
    expect(progress.step).toBe(progress.totalSteps);
    expect(progress.percent).toBe(100);
    expect(result.steps).toBe(progress.totalSteps);
    expect(result.trainerRestarts).toBe(0);
    // A resumable checkpoint at the end too.
    expect((job.lastCheckpoint as { step: number }).step).toBe(progress.totalSteps);
    const metrics = await platform.store.listMetrics(workflowIdOf(ref));
    expect(metrics.map((m) => m.step)).toEqual(
      Array.from({ length: progress.totalSteps }, (_, i) => i + 1),
    );
    // No evaluation dataset: 10% of the rows are held out and scored at the end.
    expect(job.evaluationExampleCount).toBe(12);
    expect(job.exampleCount).toBe(116);
    expect(metrics.at(-1)!.values['eval_loss:mean']).toBeGreaterThan(0);
    const samples = (await platform.artifacts.get(`${workflowIdOf(ref)}/render-samples.jsonl`))
      .toString()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(samples).toHaveLength(20);
    expect(samples[0]).toMatchObject({ source_jsonl_line_number: 1, renderer: 'simple' });
    const losses = metrics.map((m) => m.values['loss:mean'] as number);
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    const model = await platform.store.get<Record<string, unknown>>(
      'models',
      'acme',
      'sft-plain-model',
    );
    expect(model?.body).toMatchObject({ kind: 'HF_BASE_MODEL', state: 'READY' });
    uninterrupted = await modelWeights('sft-plain-model');
    // Metered for the billing export: trainer time of the job's segments.
    const usage = (
      await platform.store.listUsage('acme', {
        startTime: '2020-01-01T00:00:00Z',
        endTime: '2100-01-01T00:00:00Z',
      })
    ).filter((u) => u.source === workflowIdOf(ref));
    expect(usage.length).toBeGreaterThan(0);
    expect(
      usage.every((u) => u.usageType === 'FINE_TUNING_USAGE' && u.acceleratorType === 'CPU'),
    ).toBe(true);
    expect(usage[0]!.parameterCount).toBe(3_021_568);
    // Pods are stopped at the end.
    const pods = await platform.launcher.list();
    expect(pods.filter((p) => p.state === 'running')).toEqual([]);
  }, 300_000);

  it('survives kill -9 of its trainer pod and ends with bitwise the same weights', async () => {
    const ref = await createStoredSftJob(platform, 'sft-killed');
    await platform.orchestrator.start(ref);
    // Kill the pod once a checkpoint exists: the job must continue from it.
    await waitFor('a checkpoint', async () =>
      (await body(ref)).lastCheckpoint ? true : undefined,
    );
    const pods = (await platform.launcher.list()).filter((p) => p.state === 'running');
    expect(pods).toHaveLength(1);
    process.kill(pods[0]!.pid!, 'SIGKILL');
    const result = await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    expect(result.trainerRestarts).toBe(1);
    const job = await body(ref);
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    // The new pod continued from the checkpoint, not from scratch.
    expect((job.restoredFrom as { step: number }).step).toBeGreaterThanOrEqual(2);
    const weights = await modelWeights('sft-killed-model');
    expect(weights.equals(uninterrupted)).toBe(true);
  }, 300_000);

  it('restores the previous checkpoint when the newest fails verification, and says so', async () => {
    const ref = await createStoredSftJob(platform, 'sft-corrupt');
    await platform.orchestrator.start(ref);
    await waitFor('two checkpoints', async () => {
      const cp = (await body(ref)).lastCheckpoint as { step: number } | undefined;
      return cp && cp.step >= 4 ? true : undefined;
    });
    // Freeze the pod so no newer checkpoint commits, let the worker record the newest one,
    // then damage one bit of its shard and kill the pod: the new pod must not retry it.
    const pod = (await platform.launcher.list()).find((p) => p.state === 'running')!;
    process.kill(pod.pid!, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 1_500));
    const frozen = await body(ref);
    const newest = frozen.lastCheckpoint as { checkpoint: string; step: number };
    const history = frozen.checkpointHistory as { checkpoint: string; step: number }[];
    expect(history.at(-1)).toEqual(newest);
    const previous = history.at(-2)!;
    expect(previous.step).toBe(newest.step - 2);
    const shards = (await platform.checkpoints.list(`${newest.checkpoint}/`)).filter((f) =>
      f.key.endsWith('.safetensors'),
    );
    expect(shards.length).toBeGreaterThan(0);
    const shard = join(platform.dir, 'checkpoints', shards[0]!.key);
    const bytes = readFileSync(shard);
    bytes[bytes.length - 5] = bytes[bytes.length - 5]! ^ 0x10;
    writeFileSync(shard, bytes);
    process.kill(pod.pid!, 'SIGKILL');
    const result = await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    expect(result.trainerRestarts).toBe(1);
    const job = await body(ref);
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    // The job's status names the checkpoint it restored and the one it skipped.
    const status = job.status as { code: string; message: string };
    expect(status.code).toBe('OK');
    expect(status.message).toContain(
      `restored from ${previous.checkpoint} (step ${previous.step})`,
    );
    expect(status.message).toContain(
      `${newest.checkpoint} (step ${newest.step}) failed verification`,
    );
    expect(job.restoredFrom).toMatchObject({
      checkpoint: previous.checkpoint,
      step: previous.step,
      skipped: { checkpoint: newest.checkpoint, step: newest.step },
    });
    expect((job.restoredFrom as { skipped: { reason: string } }).skipped.reason).toMatch(
      /checksum/,
    );
    // Replaying from the older checkpoint is as deterministic as from the newer one.
    expect((await modelWeights('sft-corrupt-model')).equals(uninterrupted)).toBe(true);
  }, 300_000);

  it(':resume of a job whose newest checkpoint is corrupt restores the one before it', async () => {
    const ref = await createStoredSftJob(platform, 'sft-resume-corrupt');
    await platform.orchestrator.start(ref);
    await waitFor('two checkpoints', async () => {
      const cp = (await body(ref)).lastCheckpoint as { step: number } | undefined;
      return cp && cp.step >= 4 ? true : undefined;
    });
    const pod = (await platform.launcher.list()).find((p) => p.state === 'running')!;
    process.kill(pod.pid!, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 1_500));
    // The run dies with its pod (its host went away for good), leaving the job to be resumed.
    await platform.client.workflow.getHandle(workflowIdOf(ref)).terminate('test: the host died');
    process.kill(pod.pid!, 'SIGKILL');
    const frozen = await body(ref);
    const newest = frozen.lastCheckpoint as { checkpoint: string; step: number };
    const previous = (frozen.checkpointHistory as { checkpoint: string; step: number }[]).at(-2)!;
    const shard = (await platform.checkpoints.list(`${newest.checkpoint}/`)).find((f) =>
      f.key.endsWith('.safetensors'),
    )!;
    const path = join(platform.dir, 'checkpoints', shard.key);
    const bytes = readFileSync(path);
    bytes[bytes.length - 5] = bytes[bytes.length - 5]! ^ 0x10;
    writeFileSync(path, bytes);
    await resumeStoredJob(platform, ref);
    const result = await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    expect(result.trainerRestarts).toBe(0);
    const job = await body(ref);
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    expect((job.status as { message: string }).message).toContain(
      `restored from ${previous.checkpoint} (step ${previous.step}): ${newest.checkpoint} (step ${newest.step}) failed verification`,
    );
    // The resumed run's pods are new ones (their checkpoint names do not collide).
    expect((job.trainerJobIds as string[]).length).toBe(2);
    expect((await modelWeights('sft-resume-corrupt-model')).equals(uninterrupted)).toBe(true);
  }, 300_000);

  it('fails a job whose dataset is invalid, naming the line, without starting a pod', async () => {
    await platform.artifacts.put(
      'accounts/acme/datasets/broken/data.jsonl',
      '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}\n{not json\n',
    );
    const ref = await createStoredSftJob(platform, 'sft-broken', {
      dataset: 'accounts/acme/datasets/broken',
    });
    const before = (await platform.launcher.list()).length;
    await platform.orchestrator.start(ref);
    await expect(platform.client.workflow.getHandle(workflowIdOf(ref)).result()).rejects.toThrow();
    const job = await body(ref);
    expect(job.state).toBe('JOB_STATE_FAILED');
    expect((job.status as { message: string }).message).toMatch(
      /^Dataset validation failed: invalid JSON on line 2/,
    );
    expect((await platform.launcher.list()).length).toBe(before);
  }, 120_000);

  it('cancel stops the pod and keeps the last checkpoint', async () => {
    const ref = await createStoredSftJob(platform, 'sft-cancel', { epochs: 3 });
    await platform.orchestrator.start(ref);
    // A second checkpoint means the workflow has taken in the first one's weights.
    await waitFor('two checkpoints', async () => {
      const cp = (await body(ref)).lastCheckpoint as { step: number } | undefined;
      return cp && cp.step >= 4 ? true : undefined;
    });
    await platform.orchestrator.cancel(ref);
    await expect(platform.client.workflow.getHandle(workflowIdOf(ref)).result()).rejects.toThrow();
    const job = await body(ref);
    expect(job.state).toBe('JOB_STATE_CANCELLED');
    // The weights at the last checkpoint are kept as the output model.
    expect(job.outputModel).toBe('accounts/acme/models/sft-cancel-model');
    expect(job.outputModelStep).toBeGreaterThanOrEqual(2);
    expect(job.outputModelStep).toBeLessThanOrEqual((job.lastCheckpoint as { step: number }).step);
    const model = await platform.store.get<Record<string, unknown>>(
      'models',
      'acme',
      'sft-cancel-model',
    );
    expect(model?.body).toMatchObject({ kind: 'HF_BASE_MODEL', state: 'READY' });
    const cp = job.lastCheckpoint as { checkpoint: string };
    const files = await platform.checkpoints.list(
      `${cp.checkpoint.replace(/^accounts/, 'accounts')}/`,
    );
    expect(files.length).toBeGreaterThan(0);
    await waitFor('pods to stop', async () => {
      const running = (await platform.launcher.list()).filter((p) => p.state === 'running');
      return running.length === 0 ? true : undefined;
    });
  }, 300_000);
});

describe('managed DPO job workflow', () => {
  it('trains LoRA pairs against cached reference logprobs and promotes an adapter', async () => {
    const pair = (q: string, good: string, bad: string) =>
      JSON.stringify({
        input: { messages: [{ role: 'user', content: q }] },
        preferred_output: [{ role: 'assistant', content: good }],
        non_preferred_output: [{ role: 'assistant', content: bad }],
      });
    await platform.artifacts.put(
      'accounts/acme/datasets/prefs/data.jsonl',
      [
        pair('What is the capital of Peru?', 'Sure! Lima. Anything else?', 'Lima.'),
        pair('What color is snow?', 'Sure! White. Anything else?', 'White.'),
        pair('What is the capital of Japan?', 'Sure! Tokyo. Anything else?', 'Tokyo.'),
        pair('What color is the sky?', 'Sure! Blue. Anything else?', 'Blue.'),
      ].join('\n'),
    );
    await platform.artifacts.put(
      'accounts/acme/datasets/prefs-held-out/data.jsonl',
      [
        pair('What is the capital of Spain?', 'Sure! Madrid. Anything else?', 'Madrid.'),
        pair('What color is grass?', 'Sure! Green. Anything else?', 'Green.'),
        pair('What is the capital of Italy?', 'Sure! Rome. Anything else?', 'Rome.'),
      ].join('\n'),
    );
    const ref: JobRef = { collection: 'dpoJobs', account: 'acme', id: 'dpo-1' };
    await platform.store.create(ref.collection, ref.account, ref.id, {
      state: 'JOB_STATE_PENDING',
      baseModel: BUNDLED_BASE,
      dataset: 'accounts/acme/datasets/prefs',
      outputModel: 'accounts/acme/models/dpo-1-model',
      batchSize: 256,
      epochs: 3,
      learningRate: 2e-3,
      loraRank: 4,
      beta: 0.1,
      seed: 3,
      evaluationDataset: 'accounts/acme/datasets/prefs-held-out',
      // The pod's engine settings reach it (a LoRA job may keep its frozen base in bfloat16).
      baseDtype: 'bfloat16',
      recompute: true,
    });
    await platform.orchestrator.start(ref);
    await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    const job = await body(ref);
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    const podIds = job.trainerJobIds as string[];
    expect(podIds.length).toBeGreaterThan(0);
    for (const id of podIds)
      expect((await platform.launcher.get(id))?.spec.engine).toEqual({
        baseDtype: 'bfloat16',
        recompute: true,
      });
    const metrics = await platform.store.listMetrics(workflowIdOf(ref));
    expect(metrics.length).toBeGreaterThan(2);
    // DPO starts at log 2 (policy = reference) and the margin grows as it learns.
    expect(metrics[0]!.values['loss:mean'] as number).toBeCloseTo(Math.LN2, 2);
    expect(metrics.at(-1)!.values['margin:mean'] as number).toBeGreaterThan(0);
    // Held-out pairs: their DPO loss starts near log 2 and falls as the preference generalises.
    expect(job.evaluationExampleCount).toBe(3);
    expect(metrics.at(-1)!.values['eval_loss:mean'] as number).toBeLessThan(Math.LN2);
    expect(
      await platform.artifacts.stat(`${workflowIdOf(ref)}/reference-logprobs.json`),
    ).not.toBeNull();
    const model = await platform.store.get<Record<string, unknown>>(
      'models',
      'acme',
      'dpo-1-model',
    );
    expect(model?.body).toMatchObject({ kind: 'HF_PEFT_ADDON', baseModel: BUNDLED_BASE });
  }, 300_000);
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DcpCheckpoints } from '../../src/checkpoints/dcp/index.js';
import { writeExport } from '../../src/checkpoints/exports/files.js';
import { serializeSafetensors, type TensorMap } from '../../src/checkpoints/safetensors.js';
import { type Harness, startHarness } from './harness.js';

const JOB = 'accounts/alice/rlorTrainerJobs/t9';
const ROOT = `${JOB}/checkpoints`;
let h: Harness;

function tensors(): TensorMap {
  const data = new Float32Array(12).map((_, i) => Math.sin(i) * 0.1);
  return new Map([['model.norm.weight', { shape: [3, 4], data }]]);
}

beforeAll(async () => {
  h = await startHarness();
  let t = Date.UTC(2026, 0, 1);
  const now = () => {
    t += 60_000;
    return new Date(t);
  };
  await writeExport(
    { store: h.checkpoints, prefix: `${ROOT}/step-1` },
    [
      { path: 'config.json', body: () => JSON.stringify({ model_type: 'qwen3' }) },
      { path: 'model.safetensors', body: () => serializeSafetensors(tensors()) },
    ],
    { kind: 'hf_base', now },
  );
  await new DcpCheckpoints(h.checkpoints, { prefix: ROOT, now }).save('step-2', {
    tensors: tensors(),
    step: 2,
  });
});
afterAll(() => h.close());

const modelKeys = async (id: string) =>
  (await h.checkpoints.list(`accounts/alice/models/${id}/`)).map((o) => o.key);

describe('checkpoints of a trainer job', () => {
  it('lists the catalog oldest first, paged, even without a trainer row', async () => {
    const all = await h.call('GET', `/v1/${JOB}/checkpoints?pageSize=200`);
    expect(all.status).toBe(200);
    expect(all.json.checkpoints.map((c: { name: string }) => c.name)).toEqual([
      `${ROOT}/step-1`,
      `${ROOT}/step-2`,
    ]);
    expect(all.json.checkpoints[0]).toMatchObject({
      checkpointType: 'INFERENCE_BASE',
      promotable: true,
    });
    expect(all.json.checkpoints[1]).toMatchObject({
      checkpointType: 'TRAINING',
      promotable: false,
    });
    const p1 = await h.call('GET', `/v1/${JOB}/checkpoints?pageSize=1`);
    expect(p1.json.checkpoints).toHaveLength(1);
    const p2 = await h.call(
      'GET',
      `/v1/${JOB}/checkpoints?pageSize=1&pageToken=${p1.json.nextPageToken}`,
    );
    expect(p2.json.checkpoints[0].name).toBe(`${ROOT}/step-2`);
    expect(p2.json.nextPageToken).toBe('');
    const one = await h.call('GET', `/v1/${ROOT}/step-1`);
    expect(one.json.name).toBe(`${ROOT}/step-1`);
  });

  it('validates a promotion before asking the orchestrator', async () => {
    const calls = h.orchestrator.calls.length;
    const bad = await h.call('POST', `/v1/${ROOT}/step-1:promote`, {
      body: { outputModelId: 'Bad_Id' },
    });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/^outputModelId 'Bad_Id' is not a valid id/);
    const long = await h.call('POST', `/v1/${ROOT}/step-1:promote`, {
      body: { outputModelId: 'a'.repeat(64) },
    });
    expect(long.json.error.message).toBe('outputModelId must be 1-63 characters (got 64)');
    const dcp = await h.call('POST', `/v1/${ROOT}/step-2:promote`, {
      body: { outputModelId: 'm2' },
    });
    expect(dcp.json.error.status).toBe('FAILED_PRECONDITION');
    expect(dcp.json.error.message).toMatch(/is TRAINING and cannot be promoted/);
    const missing = await h.call('POST', `/v1/${ROOT}/step-9:promote`, {
      body: { outputModelId: 'm9' },
    });
    expect(missing.status).toBe(404);
    const foreignBase = await h.call('POST', `/v1/${ROOT}/step-1:promote`, {
      body: { outputModelId: 'm3', baseModel: 'accounts/bob/models/x' },
    });
    expect(foreignBase.status).toBe(404);
    expect(h.orchestrator.calls.length).toBe(calls);
    expect(await modelKeys('m1')).toEqual([]);
  });

  it('promotes through the orchestrator; the model is listed, unique and deletable', async () => {
    const r = await h.call('POST', `/v1/${ROOT}/step-1:promote`, {
      body: { outputModelId: 'm1', baseModel: 'accounts/temper/models/byte-lm-3m' },
    });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      name: 'accounts/alice/models/m1',
      state: 'READY',
      kind: 'HF_BASE_MODEL',
    });
    expect(h.orchestrator.calls.at(-1)).toEqual({
      op: 'promote',
      arg: {
        account: 'alice',
        checkpoint: `${ROOT}/step-1`,
        outputModelId: 'm1',
        baseModel: 'accounts/temper/models/byte-lm-3m',
      },
    });
    const g = await h.call('GET', '/v1/accounts/alice/models/m1');
    expect(g.json).toMatchObject({
      name: 'accounts/alice/models/m1',
      sourceCheckpoint: `${ROOT}/step-1`,
    });
    const l = await h.call('GET', '/v1/accounts/alice/models');
    expect(l.json.models.map((m: { name: string }) => m.name)).toEqual([
      'accounts/alice/models/m1',
    ]);
    const again = await h.call('POST', `/v1/${ROOT}/step-1:promote`, {
      body: { outputModelId: 'm1' },
    });
    expect(again.status).toBe(409);
    expect((await modelKeys('m1')).length).toBeGreaterThan(0);
    const d = await h.call('DELETE', '/v1/accounts/alice/models/m1');
    expect(d.status).toBe(200);
    expect(await modelKeys('m1')).toEqual([]);
    expect((await h.call('GET', '/v1/accounts/alice/models/m1')).status).toBe(404);
  });

  it('a job can start from the promoted model (warm start)', async () => {
    await h.call('POST', `/v1/${ROOT}/step-1:promote`, {
      body: { outputModelId: 'm4', baseModel: 'accounts/temper/models/byte-lm-3m' },
    });
    await h.call('POST', '/v1/accounts/alice/datasets', { body: { datasetId: 'd', dataset: {} } });
    const rows = Array.from({ length: 3 }, () => ({
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'hello' },
      ],
    }));
    await h.upload(
      '/v1/accounts/alice/datasets/d:upload',
      rows.map((r) => JSON.stringify(r)).join('\n'),
    );
    const r = await h.call('POST', '/v1/accounts/alice/supervisedFineTuningJobs', {
      body: { warmStartFrom: 'm4', dataset: 'd', loraRank: 0 },
    });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      warmStartFrom: 'accounts/alice/models/m4',
      maxContextLength: 512,
    });
    expect(r.json.baseModel).toBeUndefined();
  });
});

describe('models of the public catalog', () => {
  it('lists the bundled model for every key and refuses writes', async () => {
    const l = await h.call('GET', '/v1/accounts/temper/models', { key: h.bob });
    expect(l.json.models.map((m: { name: string }) => m.name)).toEqual([
      'accounts/temper/models/byte-lm-3m',
    ]);
    const g = await h.call('GET', '/v1/accounts/temper/models/byte-lm-3m');
    expect(g.json).toMatchObject({ kind: 'HF_BASE_MODEL', state: 'READY', contextLength: 512 });
    const d = await h.call('DELETE', '/v1/accounts/temper/models/byte-lm-3m');
    expect(d.status).toBe(403);
    expect(d.json.error.message).toBe(
      'accounts/temper is the public read-only catalog: create resources under accounts/alice',
    );
    const missing = await h.call('GET', '/v1/accounts/temper/models/nope');
    expect(missing.status).toBe(404);
  });
});

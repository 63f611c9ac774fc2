// Managed jobs end to end through the REST API over real HTTP, on the real platform parts:
// upload datasets, create SFT, DPO and RFT jobs, watch them run, get their models. The
// control plane is restarted in the middle of a job (it keeps nothing in memory: the job
// goes on), and another account sees none of it.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogDatasetPath } from '../../src/catalog/bundled.js';
import {
  type Json,
  preferencePair as pair,
  type RestStack,
  startRestStack,
} from '../support/rest-stack.js';
import { createRolloutJob } from '../support/rft-job.js';

let stack: RestStack;

beforeAll(async () => {
  stack = await startRestStack({ accounts: ['acme', 'other'] });
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const call: RestStack['call'] = (...args) => stack.call(...args);
const waitForJob: RestStack['waitForJob'] = (...args) => stack.waitForJob(...args);
const uploadDataset = (id: string, text: string) => stack.uploadDataset(id, text);

describe('managed jobs through the REST API', () => {
  it('runs an SFT job on an uploaded dataset across a control-plane restart', async () => {
    const text = readFileSync(
      catalogDatasetPath('accounts/temper/datasets/sure-answers-sft'),
      'utf8',
    );
    expect(await uploadDataset('sure', text)).toMatchObject({ state: 'READY', kind: 'sft' });
    const created = await call(
      'POST',
      '/v1/accounts/acme/supervisedFineTuningJobs?supervisedFineTuningJobId=sft-rest',
      {
        baseModel: 'accounts/temper/models/byte-lm-3m',
        dataset: 'accounts/acme/datasets/sure',
        outputModel: 'accounts/acme/models/sure-rest',
        batchSize: 1024,
        epochs: 2,
        learningRate: 5e-4,
        loraRank: 0,
        checkpointFrequency: 4,
      },
    );
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    // Restart the control plane while the job runs: it holds no job state of its own.
    await stack.restartControlPlane();
    const job = await waitForJob('/v1/accounts/acme/supervisedFineTuningJobs/sft-rest');
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    expect(job.outputModel).toBe('accounts/acme/models/sure-rest');
    const model = await call('GET', '/v1/accounts/acme/models/sure-rest');
    expect(model.json).toMatchObject({ kind: 'HF_BASE_MODEL', state: 'READY' });
    const metrics = await call(
      'GET',
      '/v1/accounts/acme/supervisedFineTuningJobs/sft-rest/metrics',
    );
    expect(metrics.status).toBe(200);
    expect(JSON.stringify(metrics.json)).toContain('loss:mean');
    // Its checkpoints (resumable ones at the frequency, servable exports beside them and at
    // the end) are listed under the job.
    const checkpoints = await call(
      'GET',
      '/v1/accounts/acme/supervisedFineTuningJobs/sft-rest/checkpoints',
    );
    const types = (checkpoints.json.checkpoints as { checkpointType: string }[]).map(
      (c) => c.checkpointType,
    );
    expect(types).toContain('TRAINING');
    expect(types.filter((t) => t === 'INFERENCE_BASE').length).toBeGreaterThanOrEqual(2);
    // Another account sees nothing of it.
    for (const path of [
      '/v1/accounts/acme/supervisedFineTuningJobs/sft-rest',
      '/v1/accounts/acme/models/sure-rest',
      '/v1/accounts/acme/datasets/sure',
      '/v1/accounts/acme/supervisedFineTuningJobs/sft-rest/checkpoints',
    ])
      expect((await call('GET', path, undefined, stack.keys.other)).status).toBe(404);
  }, 300_000);

  it('runs a DPO job', async () => {
    await uploadDataset(
      'prefs',
      [
        pair('What is the capital of Peru?', 'Sure! Lima. Anything else?', 'Lima.'),
        pair('What color is snow?', 'Sure! White. Anything else?', 'White.'),
        pair('What is the capital of Japan?', 'Sure! Tokyo. Anything else?', 'Tokyo.'),
      ].join('\n'),
    );
    const created = await call('POST', '/v1/accounts/acme/dpoJobs?dpoJobId=dpo-rest', {
      baseModel: 'accounts/temper/models/byte-lm-3m',
      dataset: 'accounts/acme/datasets/prefs',
      outputModel: 'accounts/acme/models/prefs-rest',
      batchSize: 256,
      epochs: 2,
      loraRank: 4,
    });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const job = await waitForJob('/v1/accounts/acme/dpoJobs/dpo-rest');
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    expect((await call('GET', '/v1/accounts/acme/models/prefs-rest')).json).toMatchObject({
      kind: 'HF_PEFT_ADDON',
    });
    // A LoRA model deploys as its base with the adapter hot-loaded on top.
    const deployment = await call('POST', '/v1/accounts/acme/deployments?deploymentId=prefs', {
      baseModel: 'accounts/acme/models/prefs-rest',
    });
    expect(deployment.status, JSON.stringify(deployment.json)).toBe(200);
    expect(deployment.json).toMatchObject({
      baseModel: 'accounts/temper/models/byte-lm-3m',
      model: 'accounts/acme/models/prefs-rest',
    });
    const completion = (await (
      await fetch(`${deployment.json.gatewayUrl}/inference/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'What color is snow?', max_tokens: 8, temperature: 0 }),
      })
    ).json()) as Json;
    expect(completion.snapshot_identity).toBe('prefs-rest-adapter');
  }, 300_000);

  it('runs an RFT job with an uploaded evaluator', async () => {
    await createRolloutJob(stack, 'rft-rest');
    const job = await waitForJob('/v1/accounts/acme/reinforcementFineTuningJobs/rft-rest');
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    const metrics = await call(
      'GET',
      '/v1/accounts/acme/reinforcementFineTuningJobs/rft-rest/metrics',
    );
    expect(JSON.stringify(metrics.json)).toContain('reward:mean');
  }, 300_000);

  it('steps a trainer job with :executeTrainStep', async () => {
    const created = await call('POST', '/v1/accounts/acme/rlorTrainerJobs?rlorTrainerJobId=keep', {
      baseModel: 'accounts/temper/models/byte-lm-3m',
      loraRank: 0,
    });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const path = '/v1/accounts/acme/rlorTrainerJobs/keep';
    for (let i = 0; i < 300 && (await call('GET', path)).json.state !== 'JOB_STATE_RUNNING'; i++)
      await new Promise((r) => setTimeout(r, 100));
    const tokens = Array.from(Buffer.from('Q: capital of Peru? A: Lima'));
    const request = {
      datums: [
        {
          modelInput: tokens.slice(0, -1),
          lossFnInputs: { target_tokens: tokens.slice(1), weights: tokens.slice(1).map(() => 1) },
        },
      ],
      adamParams: { learningRate: 1e-3 },
    };
    const first = await call('POST', `${path}:executeTrainStep`, request);
    expect(first.status, JSON.stringify(first.json)).toBe(200);
    const second = await call('POST', `${path}:executeTrainStep`, request);
    expect(second.json).toMatchObject({ modelId: first.json.modelId, step: 2 });
    const loss = (r: { json: Json }) => (r.json.metrics as Record<string, number>)['loss:sum']!;
    expect(loss(second)).toBeLessThan(loss(first));
    const bad = await call('POST', `${path}:executeTrainStep`, { datums: [] });
    expect(bad.status).toBe(400);
    expect((bad.json.error as { message: string }).message).toMatch(/at least one datum/);
    expect((await call('DELETE', path)).status).toBe(200);
  }, 120_000);
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dpoRows, type Harness, readyDataset, rftRows, sftRows, startHarness } from './harness.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
let h: Harness;

beforeAll(async () => {
  h = await startHarness();
  await readyDataset(h, 'sft-data', sftRows(5));
  await readyDataset(h, 'dpo-data', dpoRows(3));
  await readyDataset(h, 'rft-data', rftRows(4));
  await h.call('POST', '/v1/accounts/alice/datasets', {
    body: { datasetId: 'empty', dataset: { userUploaded: {} } },
  });
  const e = await h.call('POST', '/v1/accounts/alice/evaluators', {
    body: {
      evaluatorId: 'exact',
      evaluator: { source: 'export default (r) => (r.text === r.groundTruth ? 1 : 0);\n' },
    },
  });
  expect(e.status).toBe(200);
});
afterAll(() => h.close());

const post = (collection: string, body: unknown, query = '') =>
  h.call('POST', `/v1/accounts/alice/${collection}${query}`, { body });
const setState = (
  collection: 'supervisedFineTuningJobs' | 'rlorTrainerJobs',
  id: string,
  state: string,
) => h.store.update<Record<string, unknown>>(collection, 'alice', id, (b) => ({ ...b, state }));

describe('supervisedFineTuningJobs', () => {
  it('stores the job PENDING with every default resolved, then starts it', async () => {
    const r = await post(
      'supervisedFineTuningJobs',
      { baseModel: BASE, dataset: 'sft-data' },
      '?supervisedFineTuningJobId=sft-1',
    );
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      name: 'accounts/alice/supervisedFineTuningJobs/sft-1',
      displayName: 'sft-1',
      state: 'JOB_STATE_PENDING',
      status: { code: 'OK', message: '' },
      baseModel: BASE,
      dataset: 'accounts/alice/datasets/sft-data',
      epochs: 1,
      loraRank: 8,
      learningRate: 1e-3,
      batchSize: 4096,
      maxContextLength: 512,
      learningRateWarmupSteps: 0,
      gradientAccumulationSteps: 1,
      checkpointFrequency: 0,
      trainingShape: 'accounts/temper/trainingShapes/byte-lm-3m-lora',
      jobProgress: { step: 0, totalSteps: 0, percent: 0 },
    });
    expect(r.json.outputModel).toMatch(/^accounts\/alice\/models\/[a-z][a-z0-9]{11}$/);
    expect(h.orchestrator.calls.at(-1)).toEqual({
      op: 'start',
      arg: { collection: 'supervisedFineTuningJobs', account: 'alice', id: 'sft-1' },
    });
  });

  it('takes the catalog dataset, a body id, full-parameter rank and explicit values', async () => {
    const r = await post('supervisedFineTuningJobs', {
      supervisedFineTuningJobId: 'sft-full',
      baseModel: BASE,
      dataset: 'accounts/temper/datasets/sure-answers-sft',
      outputModel: 'my-model',
      loraRank: 0,
      epochs: 2.5,
      maxContextLength: 256,
    });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      name: 'accounts/alice/supervisedFineTuningJobs/sft-full',
      outputModel: 'accounts/alice/models/my-model',
      loraRank: 0,
      learningRate: 1e-4,
      epochs: 2.5,
      maxContextLength: 256,
      trainingShape: 'accounts/temper/trainingShapes/byte-lm-3m-full',
    });
  });

  it('gives a random id when none is given', async () => {
    const r = await post('supervisedFineTuningJobs', { baseModel: BASE, dataset: 'sft-data' });
    expect(r.json.name).toMatch(/^accounts\/alice\/supervisedFineTuningJobs\/[a-z][a-z0-9]{11}$/);
  });

  it.each([
    [{ loraRank: 12 }, 'LoRA rank 12 must be 0 (full parameter) or a power of 2 up to 32'],
    [{ epochs: 0 }, 'Epochs 0 must be greater than 0 (fractions allowed)'],
    [{ learningRate: 2 }, 'Learning rate 2e0 outside valid range (0, 1]'],
    [{ warmStartFrom: BASE }, 'exactly one of baseModel and warmStartFrom must be set'],
    [
      { dataset: 'dpo-data' },
      'dataset: dataset accounts/alice/datasets/dpo-data is a DPO dataset; this job needs a SFT dataset',
    ],
    [{ maxContextLength: 1024 }, "maxContextLength 1024 exceeds the model's context length 512"],
    [{ learning_rate: 1e-4 }, 'body: unknown field(s) learning_rate'],
    [{ batchSize: 'big' }, 'batchSize: Invalid input: expected number, received string'],
    [{ outputModel: 'Bad_Id' }, "outputModel: outputModelId 'Bad_Id' is not a valid id"],
    [
      { trainingShape: 'byte-lm-3m-full' },
      'trainingShape: accounts/temper/trainingShapes/byte-lm-3m-full is a POLICY_TRAINER shape; a job with loraRank 8 needs a LORA_TRAINER shape',
    ],
  ])('rejects %j with a message naming the problem', async (extra, message) => {
    const before = (await h.store.list('supervisedFineTuningJobs', 'alice')).items.length;
    const r = await post('supervisedFineTuningJobs', {
      baseModel: BASE,
      dataset: 'sft-data',
      ...extra,
    });
    expect(r.status).toBe(400);
    expect(r.json.error.status).toBe('INVALID_ARGUMENT');
    expect(r.json.error.message.startsWith(message)).toBe(true);
    expect((await h.store.list('supervisedFineTuningJobs', 'alice')).items.length).toBe(before);
  });

  it('refuses missing references and datasets that are not uploaded', async () => {
    const missing = await post('supervisedFineTuningJobs', { baseModel: BASE, dataset: 'nope' });
    expect(missing.status).toBe(404);
    expect(missing.json.error.message).toBe("Dataset 'nope' not found in account");
    const model = await post('supervisedFineTuningJobs', {
      baseModel: 'ghost',
      dataset: 'sft-data',
    });
    expect(model.json.error.message).toBe("Model 'ghost' not found in account");
    const foreign = await post('supervisedFineTuningJobs', {
      baseModel: BASE,
      dataset: 'accounts/bob/datasets/sft-data',
    });
    expect(foreign.status).toBe(404);
    const empty = await post('supervisedFineTuningJobs', { baseModel: BASE, dataset: 'empty' });
    expect(empty.status).toBe(400);
    expect(empty.json.error.status).toBe('FAILED_PRECONDITION');
    expect(empty.json.error.message).toMatch(/is UPLOADING: upload its file/);
  });

  it('refuses an output model that exists', async () => {
    await h.store.create('models', 'alice', 'taken', { state: 'READY', kind: 'HF_BASE_MODEL' });
    const r = await post('supervisedFineTuningJobs', {
      baseModel: BASE,
      dataset: 'sft-data',
      outputModel: 'taken',
    });
    expect(r.status).toBe(409);
    expect(r.json.error.message).toMatch(/model accounts\/alice\/models\/taken already exists/);
  });

  it('leaves nothing when the orchestrator cannot start the job', async () => {
    h.orchestrator.fail.add('start');
    const r = await post(
      'supervisedFineTuningJobs',
      { baseModel: BASE, dataset: 'sft-data' },
      '?supervisedFineTuningJobId=doomed',
    );
    expect(r.status).toBe(503);
    expect(r.json.error.status).toBe('UNAVAILABLE');
    expect(await h.store.get('supervisedFineTuningJobs', 'alice', 'doomed')).toBeUndefined();
  });

  it('gets, lists (paged) and refuses duplicates', async () => {
    const g = await h.call('GET', '/v1/accounts/alice/supervisedFineTuningJobs/sft-1');
    expect(g.json.state).toBe('JOB_STATE_PENDING');
    const dup = await post(
      'supervisedFineTuningJobs',
      { baseModel: BASE, dataset: 'sft-data' },
      '?supervisedFineTuningJobId=sft-1',
    );
    expect(dup.status).toBe(409);
    const p1 = await h.call('GET', '/v1/accounts/alice/supervisedFineTuningJobs?pageSize=2');
    expect(p1.json.supervisedFineTuningJobs).toHaveLength(2);
    const p2 = await h.call(
      'GET',
      `/v1/accounts/alice/supervisedFineTuningJobs?pageSize=2&pageToken=${p1.json.nextPageToken}`,
    );
    expect(p2.json.supervisedFineTuningJobs).toHaveLength(1);
    expect(p2.json.nextPageToken).toBe('');
    const names = [...p1.json.supervisedFineTuningJobs, ...p2.json.supervisedFineTuningJobs].map(
      (j: { name: string }) => j.name,
    );
    expect(new Set(names).size).toBe(3);
    const bad = await h.call('GET', '/v1/accounts/alice/supervisedFineTuningJobs?pageSize=500');
    expect(bad.json.error.message).toMatch(/^pageSize: /);
  });

  it('cancels a live job, refuses to delete it until it has ended, then deletes it', async () => {
    const c = await h.call('POST', '/v1/accounts/alice/supervisedFineTuningJobs/sft-1:cancel');
    expect(c.status).toBe(200);
    expect(h.orchestrator.calls.at(-1)?.op).toBe('cancel');
    const d = await h.call('DELETE', '/v1/accounts/alice/supervisedFineTuningJobs/sft-1');
    expect(d.status).toBe(400);
    expect(d.json.error.message).toMatch(/cancel it first/);
    await setState('supervisedFineTuningJobs', 'sft-1', 'JOB_STATE_CANCELLED');
    const again = await h.call('POST', '/v1/accounts/alice/supervisedFineTuningJobs/sft-1:cancel');
    expect(again.json.error.status).toBe('FAILED_PRECONDITION');
    const resume = await h.call('POST', '/v1/accounts/alice/supervisedFineTuningJobs/sft-1:resume');
    expect(resume.json.error.message).toMatch(
      /was cancelled and cannot be resumed: create a new job with warmStartFrom/,
    );
    const del = await h.call('DELETE', '/v1/accounts/alice/supervisedFineTuningJobs/sft-1');
    expect(del.status).toBe(200);
    expect(await h.store.get('supervisedFineTuningJobs', 'alice', 'sft-1')).toBeUndefined();
  });

  it('resumes a failed job (PENDING again) and restores it if the orchestrator fails', async () => {
    await h.store.update<Record<string, unknown>>(
      'supervisedFineTuningJobs',
      'alice',
      'sft-full',
      (b) => ({
        ...b,
        state: 'JOB_STATE_FAILED',
        status: { code: 'ERROR', message: 'pod lost' },
        completedTime: '2026-01-01T00:00:00.000Z',
      }),
    );
    h.orchestrator.fail.add('resume');
    const failed = await h.call(
      'POST',
      '/v1/accounts/alice/supervisedFineTuningJobs/sft-full:resume',
    );
    expect(failed.status).toBe(503);
    const kept = await h.call('GET', '/v1/accounts/alice/supervisedFineTuningJobs/sft-full');
    expect(kept.json).toMatchObject({ state: 'JOB_STATE_FAILED', status: { message: 'pod lost' } });
    const ok = await h.call('POST', '/v1/accounts/alice/supervisedFineTuningJobs/sft-full:resume');
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ state: 'JOB_STATE_PENDING', status: { code: 'OK' } });
    expect(ok.json.completedTime).toBeUndefined();
    expect(h.orchestrator.calls.at(-1)?.op).toBe('resume');
    const running = await h.call(
      'POST',
      '/v1/accounts/alice/supervisedFineTuningJobs/sft-full:resume',
    );
    expect(running.json.error.message).toMatch(
      /is JOB_STATE_PENDING: only JOB_STATE_FAILED jobs can be resumed/,
    );
  });

  it('serves the metrics the workflow recorded as JSON, JSON lines and CSV', async () => {
    const name = 'accounts/alice/supervisedFineTuningJobs/sft-full';
    await h.store.putMetrics(name, [
      { step: 1, values: { 'loss:mean': 2.5 }, time: '2026-01-01T00:00:01.000Z' },
      { step: 2, values: { 'loss:mean': 1.5, lr: 0.001 }, time: '2026-01-01T00:00:02.000Z' },
    ]);
    const j = await h.call('GET', `/v1/${name}/metrics`);
    expect(j.json.metrics.map((m: { step: number }) => m.step)).toEqual([1, 2]);
    const after = await h.call('GET', `/v1/${name}/metrics?afterStep=1`);
    expect(after.json.metrics).toHaveLength(1);
    const csv = await h.cp.app.inject({
      url: `/v1/${name}/metrics?format=csv`,
      headers: { authorization: `Bearer ${h.alice}` },
    });
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    expect(csv.body).toBe(
      'step,time,"loss:mean","lr"\n1,2026-01-01T00:00:01.000Z,2.5,\n2,2026-01-01T00:00:02.000Z,1.5,0.001\n',
    );
  });

  it('serves the same metric rows as columns when asked (?format=columns), the default unchanged', async () => {
    const name = 'accounts/alice/supervisedFineTuningJobs/sft-cols';
    const made = await post(
      'supervisedFineTuningJobs',
      { baseModel: BASE, dataset: 'sft-data' },
      '?supervisedFineTuningJobId=sft-cols',
    );
    expect(made.status).toBe(200);
    await h.store.putMetrics(name, [
      { step: 3, values: { 'loss:mean': 2.5, note: 'warmup' }, time: '2026-01-01T00:00:03.250Z' },
      {
        step: 7,
        values: { 'loss:mean': 1.5, 'eval_loss:mean': 1.75 },
        time: '2026-01-01T00:01:07.000Z',
      },
      { step: 9, values: { 'loss:mean': 0.1 + 0.2 }, time: '2026-01-01T00:02:09.000Z' },
    ]);
    const rows = (await h.call('GET', `/v1/${name}/metrics`)).json;
    expect(Object.keys(rows)).toEqual(['job', 'metrics']);
    const cols = await h.call('GET', `/v1/${name}/metrics?format=columns`);
    expect(cols.status).toBe(200);
    expect(cols.json).toEqual({
      job: name,
      steps: [3, 7, 9],
      timesMs: [
        Date.UTC(2026, 0, 1, 0, 0, 3, 250),
        Date.UTC(2026, 0, 1, 0, 1, 7),
        Date.UTC(2026, 0, 1, 0, 2, 9),
      ],
      values: {
        'eval_loss:mean': [null, 1.75, null],
        'loss:mean': [2.5, 1.5, 0.1 + 0.2],
        note: ['warmup', null, null],
      },
    });
    // Row for row, the columns hold exactly what the default shape holds.
    const back = cols.json.steps.map((step: number, i: number) => ({
      step,
      values: Object.fromEntries(
        Object.entries(cols.json.values as Record<string, unknown[]>)
          .filter(([, v]) => v[i] !== null)
          .map(([k, v]) => [k, v[i]]),
      ),
      time: new Date(cols.json.timesMs[i]).toISOString(),
    }));
    expect(back).toEqual(rows.metrics);
    const after = await h.call('GET', `/v1/${name}/metrics?format=columns&afterStep=7`);
    expect(after.json).toMatchObject({ steps: [9], values: { 'loss:mean': [0.1 + 0.2] } });
    const bad = await h.call('GET', `/v1/${name}/metrics?format=rows`);
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/format/);
  });
});

describe('dpoJobs', () => {
  it('defaults beta to 0.1 on a DPO dataset and checks its range with the loss message', async () => {
    const r = await post('dpoJobs', { baseModel: BASE, dataset: 'dpo-data' }, '?dpoJobId=dpo-1');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      beta: 0.1,
      dataset: 'accounts/alice/datasets/dpo-data',
      state: 'JOB_STATE_PENDING',
    });
    const bad = await post('dpoJobs', { baseModel: BASE, dataset: 'dpo-data', beta: 0.7 });
    expect(bad.json.error.message).toBe('beta: DPO beta must satisfy 0 < beta < 0.5');
    const wrong = await post('dpoJobs', { baseModel: BASE, dataset: 'sft-data' });
    expect(wrong.json.error.message).toMatch(/is a SFT dataset; this job needs a DPO dataset/);
  });

  it('points at its metrics file', async () => {
    const r = await h.call('GET', '/v1/accounts/alice/dpoJobs/dpo-1:getMetricsFileEndpoint');
    expect(r.json.signedUrl).toBe('/v1/accounts/alice/dpoJobs/dpo-1/metrics?format=jsonl');
  });
});

describe('reinforcementFineTuningJobs', () => {
  const rft = (extra: Record<string, unknown> = {}, query = '') =>
    post(
      'reinforcementFineTuningJobs',
      { baseModel: BASE, dataset: 'rft-data', evaluator: 'exact', ...extra },
      query,
    );

  it('stores the spec defaults', async () => {
    const r = await rft({}, '?reinforcementFineTuningJobId=rft-1');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      evaluator: 'accounts/alice/evaluators/exact',
      epochs: 1,
      learningRate: 1e-4,
      loraRank: 8,
      batchSize: 32768,
      chunkSize: 200,
      rlLossMethod: 'grpo',
      rlKlBeta: 0,
      lossConfig: { method: 'grpo', klBeta: 0.001, epsLow: 0.2, epsHigh: 0.2 },
      temperature: 0.7,
      topP: 1,
      topK: 40,
      responseCandidatesCount: 8,
      maxTokens: 2048,
      maxConcurrentRollouts: 96,
      rolloutTimeout: 60,
    });
  });

  it.each([
    [{ learningRate: 1e-2 }, 'Learning rate 1e-2 outside valid range [1e-5, 5e-4]'],
    [
      { n: 1 },
      'Response candidates count (n) 1 is below the minimum of 2: RFT compares several responses per prompt',
    ],
    [{ temperature: 0 }, 'Temperature 0 outside valid range [0.1, 2.0]'],
    [{ epochs: 11 }, 'Epochs 11 must be a whole number in [1, 10]'],
    [{ loraRank: 64 }, 'LoRA rank 64 must be a power of 2 in [4, 32]'],
    [{ maxTokens: 8 }, 'Max tokens 8 outside valid range [16, 16384]'],
    [{ topP: 0 }, 'Top-p 0 outside valid range (0, 1]'],
    [{ chunkSize: 0 }, 'Chunk size 0 must be -1 (off) or a positive whole number'],
    [
      { rlLossMethod: 'dapo', rlKlBeta: 0.01 },
      'loss_config.kl_beta must be 0/unset when method is DAPO',
    ],
    [
      { rlLossMethod: 'gspo-token', rlKlBeta: 0.01 },
      'loss_config.kl_beta must be 0/unset when method is GSPO_TOKEN',
    ],
    [
      { rlLossMethod: 'ppo' },
      "unknown rl loss method 'ppo'; valid methods are grpo, dapo, gspo-token",
    ],
    [{ rolloutTimeout: 'soon' }, "rolloutTimeout: 'soon' is not a duration"],
    [
      { dataset: 'sft-data' },
      'dataset: dataset accounts/alice/datasets/sft-data is a SFT dataset; this job needs a RFT dataset',
    ],
  ])('rejects %j with the documented message', async (extra, message) => {
    const r = await rft(extra);
    expect(r.status).toBe(400);
    expect(r.json.error.message.startsWith(message)).toBe(true);
  });

  it('names every bad field at once', async () => {
    const r = await rft({ learningRate: 1e-2, temperature: 0 });
    expect(r.json.error.message).toBe(
      'Learning rate 1e-2 outside valid range [1e-5, 5e-4]; Temperature 0 outside valid range [0.1, 2.0]',
    );
    expect(r.json.error.details).toHaveLength(2);
  });

  it('needs an evaluator of the account', async () => {
    const r = await rft({ evaluator: 'x' });
    expect(r.status).toBe(404);
    expect(r.json.error.message).toBe("Evaluator 'x' not found in account");
  });

  it('takes grpo with a KL beta, n, a duration and a remote environment', async () => {
    const r = await rft({
      rlKlBeta: 0.01,
      n: 4,
      rolloutTimeout: '2m',
      remoteServerUrl: 'http://127.0.0.1:9000',
      temperature: 1,
    });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      rlKlBeta: 0.01,
      lossConfig: { klBeta: 0.01 },
      responseCandidatesCount: 4,
      rolloutTimeout: 120,
      remoteServerUrl: 'http://127.0.0.1:9000',
      temperature: 1,
    });
  });

  it('refuses to delete the evaluator or the dataset of a live job', async () => {
    const e = await h.call('DELETE', '/v1/accounts/alice/evaluators/exact');
    expect(e.status).toBe(400);
    expect(e.json.error.message).toMatch(
      /is used by accounts\/alice\/reinforcementFineTuningJobs\/rft-1/,
    );
    const d = await h.call('DELETE', '/v1/accounts/alice/datasets/rft-data');
    expect(d.json.error.status).toBe('FAILED_PRECONDITION');
  });
});

describe('rlorTrainerJobs', () => {
  it('resolves the shape, context and the inactivity timeout', async () => {
    const r = await post(
      'rlorTrainerJobs',
      { baseModel: BASE, inactivityTimeout: '1800s' },
      '?rlorTrainerJobId=t1',
    );
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      baseModel: BASE,
      loraRank: 0,
      learningRate: 1e-5,
      maxContextLength: 512,
      forwardOnly: false,
      replicaCount: 1,
      inactivityTimeout: '1800s',
      disableInactivityCleanup: false,
      trainingShapeRef: 'accounts/temper/trainingShapes/byte-lm-3m-full',
      state: 'JOB_STATE_PENDING',
    });
    const dflt = await post('rlorTrainerJobs', { baseModel: BASE, inactivityTimeout: '0' });
    expect(dflt.json.inactivityTimeout).toBe('3600s');
    const unset = await post('rlorTrainerJobs', { baseModel: BASE, inactivityTimeout: '30m' });
    expect(unset.json.inactivityTimeout).toBe('1800s');
    const bad = await post('rlorTrainerJobs', { baseModel: BASE, inactivityTimeout: 'a while' });
    expect(bad.json.error.message).toMatch(/^inactivityTimeout: 'a while' is not a duration/);
  });

  it('takes the base model from a training shape and checks the mode', async () => {
    const r = await post('rlorTrainerJobs', {
      trainingShapeRef: 'accounts/temper/trainingShapes/byte-lm-3m-reference/versions/1',
      forwardOnly: true,
    });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      baseModel: BASE,
      trainingShapeRef: 'accounts/temper/trainingShapes/byte-lm-3m-reference',
    });
    const lora = await post('rlorTrainerJobs', {
      trainingShapeRef: 'byte-lm-3m-lora',
      loraRank: 0,
    });
    expect(lora.json.error.message).toMatch(
      /is a LORA_TRAINER shape; this trainer needs POLICY_TRAINER/,
    );
    const none = await post('rlorTrainerJobs', { trainingShapeRef: 'nope' });
    expect(none.json.error.message).toBe(
      'baseModel is required (or a trainingShapeRef that names one)',
    );
  });

  it(':executeTrainStep answers UNIMPLEMENTED when the orchestrator has no train step', async () => {
    const r = await h.call('POST', '/v1/accounts/alice/rlorTrainerJobs/t1:executeTrainStep', {
      body: {},
    });
    expect(r.status).toBe(501);
    expect(r.json.error.status).toBe('UNIMPLEMENTED');
  });

  it('DELETE of a live trainer cancels it first', async () => {
    const r = await h.call('DELETE', '/v1/accounts/alice/rlorTrainerJobs/t1');
    expect(r.status).toBe(200);
    expect(h.orchestrator.calls.at(-1)).toEqual({
      op: 'cancel',
      arg: { collection: 'rlorTrainerJobs', account: 'alice', id: 't1' },
    });
    expect(await h.store.get('rlorTrainerJobs', 'alice', 't1')).toBeUndefined();
  });

  it('an unknown method answers NOT_FOUND', async () => {
    const r = await h.call('POST', '/v1/accounts/alice/rlorTrainerJobs/t1:explode');
    expect(r.status).toBe(404);
    expect(r.json.error.message).toBe("no method POST ':explode' on rlorTrainerJobs");
  });
});

describe('the stored bodies are what the workflows read', () => {
  it('parse with the workflow schemas', async () => {
    const { rftJobFieldsSchema, trainerJobBodySchema, trainingJobBodySchema } = await import(
      '../../src/workflows/activities/job-body.js'
    );
    const body = async (collection: Parameters<typeof h.store.list>[0]) =>
      (await h.store.list<Record<string, unknown>>(collection, 'alice')).items.map((r) => r.body);
    for (const b of [...(await body('supervisedFineTuningJobs')), ...(await body('dpoJobs'))])
      expect(trainingJobBodySchema.safeParse(b).success).toBe(true);
    for (const b of await body('reinforcementFineTuningJobs')) {
      expect(trainingJobBodySchema.safeParse(b).success).toBe(true);
      expect(rftJobFieldsSchema.safeParse(b).success).toBe(true);
    }
    const trainers = await body('rlorTrainerJobs');
    expect(trainers.length).toBeGreaterThan(0);
    for (const b of trainers) expect(trainerJobBodySchema.safeParse(b).success).toBe(true);
  });
});

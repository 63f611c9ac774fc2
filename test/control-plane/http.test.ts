// Over a real socket: listen(), a multipart upload with fetch + FormData, a job create, a
// custom method sent with a JSON content type and no body; and :executeTrainStep with an
// orchestrator that implements it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, jsonl, sftRows, startHarness, TrainStepOrchestrator } from './harness.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
let h: Harness;
let url: string;

beforeAll(async () => {
  h = await startHarness({ orchestrator: (s) => new TrainStepOrchestrator(s) });
  url = await h.cp.listen(0, '127.0.0.1');
});
afterAll(() => h.close());

const api = (path: string, init: RequestInit = {}) =>
  fetch(`${url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${h.alice}`, ...(init.headers as Record<string, string>) },
  });
const json = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

describe('the control plane over HTTP', () => {
  it('listens and answers health checks without a key', async () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ ok: true });
  });

  it('creates and uploads a dataset with multipart form data, then runs a job on it', async () => {
    expect(
      (await api('/v1/accounts/alice/datasets', json({ datasetId: 'web', dataset: {} }))).status,
    ).toBe(200);
    const form = new FormData();
    form.append('file', new Blob([jsonl(sftRows(4))], { type: 'application/jsonl' }), 'web.jsonl');
    const up = await api('/v1/accounts/alice/datasets/web:upload', { method: 'POST', body: form });
    expect(up.status).toBe(200);
    expect(await up.json()).toMatchObject({ state: 'READY', exampleCount: 4 });
    const job = await api(
      '/v1/accounts/alice/supervisedFineTuningJobs?supervisedFineTuningJobId=web-1',
      json({ baseModel: BASE, dataset: 'web', outputModel: 'web-model' }),
    );
    expect(job.status).toBe(200);
    const rival = await api(
      '/v1/accounts/alice/supervisedFineTuningJobs',
      json({ baseModel: BASE, dataset: 'web', outputModel: 'web-model' }),
    );
    expect(rival.status).toBe(409);
    expect(((await rival.json()) as { error: { message: string } }).error.message).toBe(
      'outputModel: accounts/alice/models/web-model is already the output of accounts/alice/supervisedFineTuningJobs/web-1',
    );
    const cancel = await api('/v1/accounts/alice/supervisedFineTuningJobs/web-1:cancel', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    expect(cancel.status).toBe(200);
  });

  it('runs :executeTrainStep through the orchestrator when it has one', async () => {
    const t = await api(
      '/v1/accounts/alice/rlorTrainerJobs?rlorTrainerJobId=t1',
      json({ baseModel: BASE }),
    );
    expect(t.status).toBe(200);
    const step = await api(
      '/v1/accounts/alice/rlorTrainerJobs/t1:executeTrainStep',
      json({ learningRate: 1e-5 }),
    );
    expect(step.status).toBe(200);
    expect(await step.json()).toEqual({ step: 1, metrics: { 'loss:sum': 1.5 } });
    expect(h.orchestrator.calls.at(-1)).toEqual({
      op: 'executeTrainStep',
      arg: { collection: 'rlorTrainerJobs', account: 'alice', id: 't1' },
      request: { learningRate: 1e-5 },
    });
  });

  it('answers malformed JSON with INVALID_ARGUMENT', async () => {
    const r = await api('/v1/accounts/alice/secrets', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"keyName":',
    });
    expect(r.status).toBe(400);
    const body = (await r.json()) as { error: { status: string; message: string } };
    expect(body.error.status).toBe('INVALID_ARGUMENT');
    expect(body.error.message).toMatch(/^body is not valid JSON/);
  });
});

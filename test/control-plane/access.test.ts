// API keys and account scoping on every collection: no key or a bad key → 401; another
// account's resources → 404 with the same words a missing one gets (existence does not
// leak); the public account `temper` is readable by all and writable by none.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrapAccount } from '../../src/control-plane/index.js';
import { type Harness, readyDataset, rftRows, sftRows, startHarness } from './harness.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
let h: Harness;

/** One resource of alice's in every collection. */
const ALICE = {
  datasets: 'sft-data',
  supervisedFineTuningJobs: 'sft-1',
  dpoJobs: 'dpo-1',
  reinforcementFineTuningJobs: 'rft-1',
  rlorTrainerJobs: 't1',
  models: 'm1',
  deployments: 'd1',
  evaluators: 'e1',
  secrets: 's1',
  trainingShapes: 'byte-lm-3m-lora',
} as const;
const COLLECTIONS = Object.keys(ALICE) as (keyof typeof ALICE)[];

beforeAll(async () => {
  h = await startHarness();
  await readyDataset(h, 'sft-data', sftRows(3));
  await readyDataset(h, 'rft-data', rftRows(3));
  const ok = async (p: Promise<{ status: number; json: unknown }>) => {
    const r = await p;
    if (r.status !== 200) throw new Error(JSON.stringify(r.json));
  };
  await ok(
    h.call('POST', '/v1/accounts/alice/evaluators', {
      body: { evaluatorId: 'e1', evaluator: { source: 'export default () => 1;' } },
    }),
  );
  await ok(
    h.call('POST', '/v1/accounts/alice/secrets?secretId=s1', {
      body: { keyName: 'K', value: 'v' },
    }),
  );
  await ok(
    h.call('POST', '/v1/accounts/alice/supervisedFineTuningJobs?supervisedFineTuningJobId=sft-1', {
      body: { baseModel: BASE, dataset: 'sft-data' },
    }),
  );
  await ok(
    h.call(
      'POST',
      '/v1/accounts/alice/reinforcementFineTuningJobs?reinforcementFineTuningJobId=rft-1',
      { body: { baseModel: BASE, dataset: 'rft-data', evaluator: 'e1' } },
    ),
  );
  await ok(
    h.call('POST', '/v1/accounts/alice/rlorTrainerJobs?rlorTrainerJobId=t1', {
      body: { baseModel: BASE },
    }),
  );
  await h.store.create('dpoJobs', 'alice', 'dpo-1', { state: 'JOB_STATE_RUNNING' });
  await h.store.create('models', 'alice', 'm1', { state: 'READY', kind: 'HF_BASE_MODEL' });
});
afterAll(() => h.close());

describe('authentication', () => {
  it('refuses requests without a key or with a bad one', async () => {
    const none = await h.call('GET', '/v1/accounts/alice/datasets', { key: null });
    expect(none.status).toBe(401);
    expect(none.json.error).toEqual({
      code: 401,
      status: 'UNAUTHENTICATED',
      message:
        'missing API key: send the header "X-Api-Key: <key>" or "Authorization: Bearer <key>"',
    });
    const bad = await h.call('GET', '/v1/accounts/alice/datasets', { key: 'tk_nope' });
    expect(bad.json.error.message).toBe('invalid API key');
  });

  it('bootstraps accounts but never for the catalog', async () => {
    await expect(bootstrapAccount(h.store, 'temper')).rejects.toThrow(/read-only catalog/);
    await expect(bootstrapAccount(h.store, 'Bad')).rejects.toThrow(/not a valid id/);
    const carol = await bootstrapAccount(h.store, 'carol');
    const r = await h.call('GET', '/v1/accounts/carol/datasets', { key: carol.apiKey });
    expect(r.json).toEqual({ datasets: [], nextPageToken: '' });
  });
});

describe('another account answers 404 on every collection', () => {
  it.each(COLLECTIONS)('%s', async (collection) => {
    const account = 'alice';
    const id = ALICE[collection];
    const item = `/v1/accounts/${account}/${collection}/${id}`;
    const missing = `/v1/accounts/${account}/${collection}/zz-missing`;
    // alice can see what she has (training shapes are only in the public account)
    if (collection !== 'deployments' && collection !== 'trainingShapes')
      expect((await h.call('GET', item)).status).toBe(200);
    for (const [method, url] of [
      ['GET', item],
      ['DELETE', item],
      ['PATCH', item],
      ['POST', `${item}:cancel`],
      ['GET', `/v1/accounts/${account}/${collection}`],
      ['POST', `/v1/accounts/${account}/${collection}`],
    ] as const) {
      const r = await h.call(method, url, { key: h.bob, body: {} });
      expect([method, url, r.status]).toEqual([method, url, 404]);
      expect(r.json.error.status).toBe('NOT_FOUND');
    }
    const seen = await h.call('GET', item, { key: h.bob });
    const absent = await h.call('GET', missing, { key: h.bob });
    expect(seen.json.error.message).toBe(`accounts/alice/${collection}/${id} not found`);
    expect(absent.json.error.message).toBe(`accounts/alice/${collection}/zz-missing not found`);
  });

  it('sub-resources and custom methods too', async () => {
    for (const [method, url] of [
      ['GET', '/v1/accounts/alice/supervisedFineTuningJobs/sft-1/metrics'],
      ['GET', '/v1/accounts/alice/rlorTrainerJobs/t1/checkpoints'],
      ['POST', '/v1/accounts/alice/rlorTrainerJobs/t1/checkpoints/step-1:promote'],
      ['POST', '/v1/accounts/alice/rlorTrainerJobs/t1:executeTrainStep'],
      ['POST', '/v1/accounts/alice/datasets/sft-data:upload'],
      ['POST', '/v1/accounts/alice/datasets/sft-data:validate'],
      ['GET', '/v1/accounts/alice/deployments/d1/ledger'],
      ['GET', '/v1/accounts/alice/evaluators/e1:getSourceCode'],
      ['POST', '/v1/accounts/alice/reinforcementFineTuningJobs/rft-1:resume'],
      ['GET', '/v1/accounts/nobody/datasets'],
    ] as const) {
      const r = await h.call(method, url, { key: h.bob, body: {} });
      expect([url, r.status]).toEqual([url, 404]);
    }
  });

  it('a key cannot use another account resource by name in a body', async () => {
    const r = await h.call('POST', '/v1/accounts/bob/reinforcementFineTuningJobs', {
      key: h.bob,
      body: {
        baseModel: BASE,
        dataset: 'accounts/alice/datasets/rft-data',
        evaluator: 'accounts/alice/evaluators/e1',
      },
    });
    expect(r.status).toBe(404);
    const out = await h.call('POST', '/v1/accounts/bob/supervisedFineTuningJobs', {
      key: h.bob,
      body: {
        baseModel: BASE,
        dataset: 'accounts/temper/datasets/sure-answers-sft',
        outputModel: 'accounts/alice/models/x',
      },
    });
    expect(out.json.error.message).toBe(
      "outputModel: 'accounts/alice/models/x' must be a model of accounts/bob",
    );
  });
});

describe('the public catalog account', () => {
  it('is readable by every key', async () => {
    for (const url of [
      '/v1/accounts/temper/models',
      '/v1/accounts/temper/datasets',
      '/v1/accounts/temper/trainingShapes',
      '/v1/accounts/temper/supervisedFineTuningJobs',
      '/v1/accounts/temper/secrets',
    ])
      expect((await h.call('GET', url, { key: h.bob })).status).toBe(200);
  });

  it.each(COLLECTIONS)('refuses writes to %s with PERMISSION_DENIED', async (collection) => {
    // models and training shapes have no create route at all (promotion makes models)
    const creatable = collection !== 'models' && collection !== 'trainingShapes';
    for (const [method, url] of [
      ...(creatable ? ([['POST', `/v1/accounts/temper/${collection}`]] as const) : []),
      ['DELETE', `/v1/accounts/temper/${collection}/x`],
      ['POST', `/v1/accounts/temper/${collection}/x:cancel`],
    ] as const) {
      const r = await h.call(method, url, { body: {} });
      expect([url, r.status, r.json.error.status]).toEqual([url, 403, 'PERMISSION_DENIED']);
    }
  });
});

describe('errors', () => {
  it('unknown routes and malformed bodies answer in the one shape', async () => {
    const route = await h.call('GET', '/v1/accounts/alice/widgets');
    expect(route.json.error).toEqual({
      code: 404,
      status: 'NOT_FOUND',
      message: 'no route GET /v1/accounts/alice/widgets',
    });
    const res = await h.cp.app.inject({
      method: 'POST',
      url: '/v1/accounts/alice/secrets',
      headers: { authorization: `Bearer ${h.alice}`, 'content-type': 'application/json' },
      payload: '{"keyName": ',
    });
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error.status).toBe('INVALID_ARGUMENT');
    const array = await h.call('POST', '/v1/accounts/alice/secrets', { body: [1, 2] });
    expect(array.json.error.message).toBe('body: expected a JSON object');
  });
});

// Create-time bounds: what cannot run is refused at create with a 400 naming the field, and
// nothing is stored. Every string of a REST body is bounded (a 7 MiB field used to be stored
// and echoed on every read); epochs that train no example, a context too short to hold an
// example, durations that are not durations and replica settings no host can run are refused
// by the one schema that defines each setting.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayHarness, startGatewayHarness } from '../support/gateways.js';
import { readyDataset, sftRows } from './harness.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
let h: GatewayHarness;

beforeAll(async () => {
  h = await startGatewayHarness({ credentials: 'none' });
  await readyDataset(h, 'sft-data', sftRows(5));
});
afterAll(async () => {
  await h?.close();
});

const post = (collection: string, body: unknown, query = '') =>
  h.call('POST', `/v1/accounts/alice/${collection}${query}`, { body });

async function refused(collection: string, body: unknown, message: RegExp) {
  const before = (await h.call('GET', `/v1/accounts/alice/${collection}`)).json;
  const r = await post(collection, body);
  expect(r.status, JSON.stringify(r.json)).toBe(400);
  expect(r.json.error.status).toBe('INVALID_ARGUMENT');
  expect(r.json.error.message).toMatch(message);
  // Nothing was created.
  expect((await h.call('GET', `/v1/accounts/alice/${collection}`)).json).toEqual(before);
}

const BIG = 'x'.repeat(7 << 20);

describe('create-time bounds', () => {
  it('refuses a 7 MiB string in any field, naming it', async () => {
    await refused(
      'datasets',
      { datasetId: 'huge', dataset: { userUploaded: {}, format: BIG } },
      /^dataset\.format: 7340032 characters is longer than the 65536 a field may hold$/,
    );
    await refused(
      'rlorTrainerJobs',
      { baseModel: BASE, acceleratorType: BIG },
      /^acceleratorType: 7340032 characters is longer than the 65536/,
    );
    await refused(
      'deployments',
      { baseModel: BASE, acceleratorType: BIG },
      /^acceleratorType: 7340032 characters/,
    );
    // Below the general bound, a field's own limit speaks.
    await refused(
      'datasets',
      { datasetId: 'fmt', dataset: { userUploaded: {}, format: 'y'.repeat(101) } },
      /^dataset\.format: Too big: expected string to have <=100 characters$/,
    );
  });

  it('refuses epochs that train no example (0 steps)', async () => {
    await refused(
      'supervisedFineTuningJobs',
      { baseModel: BASE, dataset: 'sft-data', epochs: 1e-300 },
      /^epochs: 1e-300 epochs of 5 examples trains no example \(0 steps\): give at least 2e-1$/,
    );
    await refused(
      'supervisedFineTuningJobs',
      { baseModel: BASE, dataset: 'sft-data', epochs: 0.05 },
      /trains no example \(0 steps\)/,
    );
    // 0.1 of 5 examples rounds to 1 example: that runs.
    const ok = await post('supervisedFineTuningJobs', {
      baseModel: BASE,
      dataset: 'sft-data',
      epochs: 0.1,
    });
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
  });

  it('refuses a maxContextLength below the minimum, for jobs and trainers alike', async () => {
    await refused(
      'supervisedFineTuningJobs',
      { baseModel: BASE, dataset: 'sft-data', maxContextLength: 1 },
      /^maxContextLength: must be at least 32 tokens$/,
    );
    await refused(
      'rlorTrainerJobs',
      { baseModel: BASE, maxContextLength: 8 },
      /^maxContextLength: must be at least 32 tokens$/,
    );
  });

  it('refuses non-finite and absurd durations', async () => {
    const cases: [unknown, string][] = [
      [1e308, 'inactivityTimeout: 1e+308 is not a duration from 1s to 2592000s (720h)'],
      [
        '999999999999999999999999s',
        'inactivityTimeout: 999999999999999999999999s is not a duration from 1s to 2592000s (720h)',
      ],
      [-5, 'inactivityTimeout: -5 is not a duration from 1s to 2592000s (720h)'],
      [
        '1e308s',
        "inactivityTimeout: '1e308s' is not a duration (examples: 90s, 30m, 2h, 1h30m, 0)",
      ],
    ];
    for (const [inactivityTimeout, message] of cases)
      await refused(
        'rlorTrainerJobs',
        { baseModel: BASE, inactivityTimeout },
        new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`),
      );
    const ok = await post('rlorTrainerJobs', { baseModel: BASE, inactivityTimeout: '30m' });
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    expect(ok.json.inactivityTimeout).toBe('1800s');
    const zero = await post('rlorTrainerJobs', { baseModel: BASE, inactivityTimeout: 0 });
    expect(zero.json.inactivityTimeout).toBe('3600s');
  });

  it('refuses replica settings no host can run', async () => {
    await refused(
      'deployments',
      { baseModel: BASE, replica: { threads: 100_000 } },
      /^replica\.threads: Too big: expected number to be <=64$/,
    );
    await refused(
      'deployments',
      { baseModel: BASE, replica: { maxConcurrent: 1e9 } },
      /^replica\.maxConcurrent: Too big/,
    );
  });
});

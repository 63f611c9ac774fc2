// Managed ORPO jobs and full-parameter RFT end to end through the REST API on the bundled
// model: each runs on the real platform (Temporal, worker, trainer pod, deployment), learns,
// and promotes its output model.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preferencePair as pair, type RestStack, startRestStack } from '../support/rest-stack.js';
import { createRolloutJob } from '../support/rft-job.js';

let stack: RestStack;

beforeAll(async () => {
  stack = await startRestStack({ accounts: ['acme'] });
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const call: RestStack['call'] = (...args) => stack.call(...args);
const waitForJob: RestStack['waitForJob'] = (...args) => stack.waitForJob(...args);

describe('ORPO and full-parameter RFT through the REST API', () => {
  it('runs an ORPO job: its loss falls and it promotes a LoRA model', async () => {
    await stack.uploadDataset(
      'prefs',
      [
        pair('What is the capital of Peru?', 'Sure! Lima. Anything else?', 'Lima.'),
        pair('What color is snow?', 'Sure! White. Anything else?', 'White.'),
        pair('What is the capital of Japan?', 'Sure! Tokyo. Anything else?', 'Tokyo.'),
      ].join('\n'),
    );
    const created = await call('POST', '/v1/accounts/acme/orpoJobs?orpoJobId=orpo-rest', {
      baseModel: 'accounts/temper/models/byte-lm-3m',
      dataset: 'accounts/acme/datasets/prefs',
      outputModel: 'accounts/acme/models/prefs-orpo',
      batchSize: 256,
      epochs: 6,
      loraRank: 4,
      orpoLambda: 0.5,
    });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const path = '/v1/accounts/acme/orpoJobs/orpo-rest';
    const job = await waitForJob(path);
    expect(job.state, JSON.stringify(job.status)).toBe('JOB_STATE_COMPLETED');
    const rows = await stack.metricRows(path);
    expect(rows.length).toBeGreaterThanOrEqual(6);
    expect(rows[0]!.values).toHaveProperty(['or_loss:mean']);
    expect(rows.at(-1)!.values['loss:mean']!).toBeLessThan(rows[0]!.values['loss:mean']!);
    expect((await call('GET', '/v1/accounts/acme/models/prefs-orpo')).json).toMatchObject({
      kind: 'HF_PEFT_ADDON',
      state: 'READY',
    });
  }, 300_000);

  it('runs a full-parameter RFT job (loraRank 0) and promotes a full model', async () => {
    const { path, created } = await createRolloutJob(stack, 'rft-full', { epochs: 1, loraRank: 0 });
    expect(created).toMatchObject({
      loraRank: 0,
      trainingShape: 'accounts/temper/trainingShapes/byte-lm-3m-full',
    });
    const job = await waitForJob(path);
    expect(job.state, JSON.stringify(job.status)).toBe('JOB_STATE_COMPLETED');
    const rows = await stack.metricRows(path);
    expect(rows).toHaveLength(1);
    for (const row of rows) expect(row.values).toHaveProperty(['reward:mean']);
    // A policy step was taken on the full weights (some group had reward variance).
    expect(rows.some((r) => (r.values['groups_kept:sum'] ?? 0) > 0)).toBe(true);
    expect((await call('GET', '/v1/accounts/acme/models/rft-full-out')).json).toMatchObject({
      kind: 'HF_BASE_MODEL',
      state: 'READY',
    });
  }, 300_000);
});

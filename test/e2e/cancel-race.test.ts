// Jobs cancelled right after they are created, through the REST API on the real platform
// parts (Temporal dev server, SQLite store, a worker): each must end JOB_STATE_CANCELLED, stay
// that way (no late status or progress write of an activity may revive it), be deletable,
// and free its output model name. Before status writes were guarded, about a quarter of such
// jobs stayed JOB_STATE_RUNNING forever while Temporal said Canceled.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogDatasetPath } from '../../src/catalog/bundled.js';
import { workflowIdOf } from '../../src/workflows/index.js';
import { waitFor } from '../support/platform.js';
import { type Json, type RestStack, startRestStack } from '../support/rest-stack.js';

let stack: RestStack;

beforeAll(async () => {
  stack = await startRestStack();
  // A dataset large enough that preparing a job (validating and rendering it) takes a while:
  // the cancel then lands while the prepare activity still runs, which is the race.
  const rows = readFileSync(catalogDatasetPath('accounts/temper/datasets/sure-answers-sft'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  const text = Array.from({ length: 4000 }, (_, i) => rows[i % rows.length]).join('\n');
  await stack.uploadDataset('big', text);
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const call: RestStack['call'] = (...args) => stack.call(...args);

const JOBS = '/v1/accounts/acme/supervisedFineTuningJobs';

function jobBody(i: number) {
  return {
    baseModel: 'accounts/temper/models/byte-lm-3m',
    dataset: 'accounts/acme/datasets/big',
    outputModel: `accounts/acme/models/race-${i}`,
    batchSize: 1024,
    epochs: 1,
    loraRank: 0,
  };
}

describe('cancel right after create', () => {
  it('30 jobs all end CANCELLED, stay so, are deletable and free their output model', async () => {
    const N = 30;
    // Half the jobs are cancelled the moment their create returns (the workflow usually sees
    // the cancel before it schedules anything), half the moment they are seen preparing (the
    // cancel then races the prepare activity's own status writes), all at once.
    await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const created = await call(
          'POST',
          `${JOBS}?supervisedFineTuningJobId=race-${i}`,
          jobBody(i),
        );
        expect(created.status, JSON.stringify(created.json)).toBe(200);
        if (i % 2 === 1)
          while ((await call('GET', `${JOBS}/race-${i}`)).json.state === 'JOB_STATE_PENDING')
            await new Promise((r) => setTimeout(r, 10));
        const cancelled = await call('POST', `${JOBS}/race-${i}:cancel`);
        expect(cancelled.status, JSON.stringify(cancelled.json)).toBe(200);
      }),
    );
    // Every workflow closes...
    for (let i = 0; i < N; i++) {
      const handle = stack.platform.client.workflow.getHandle(
        workflowIdOf({ collection: 'supervisedFineTuningJobs', account: 'acme', id: `race-${i}` }),
      );
      await handle.result().catch(() => undefined);
    }
    // ... and the jobs say so; a late write has had every chance to land by now (activities
    // of a cancelled workflow that were already running finish within their heartbeats).
    await new Promise((r) => setTimeout(r, 3_000));
    const states = await Promise.all(
      Array.from(
        { length: N },
        async (_, i) => (await call('GET', `${JOBS}/race-${i}`)).json.state,
      ),
    );
    expect(states).toEqual(Array.from({ length: N }, () => 'JOB_STATE_CANCELLED'));
    // No pod was left behind by a launch the cancel overtook.
    await waitFor(
      'no running pods',
      async () =>
        (await stack.platform.launcher.list()).every((p) => p.state !== 'running')
          ? true
          : undefined,
      30_000,
    );
    // Deletable, and the output model names are free again for a new job.
    for (let i = 0; i < N; i++) {
      const deleted = await call('DELETE', `${JOBS}/race-${i}`);
      expect(deleted.status, JSON.stringify(deleted.json)).toBe(200);
    }
    expect((await call('GET', `${JOBS}/race-0`)).status).toBe(404);
    const again = await call('POST', `${JOBS}?supervisedFineTuningJobId=race-again`, jobBody(0));
    expect(again.status, JSON.stringify(again.json)).toBe(200);
    expect(again.json.outputModel).toBe('accounts/acme/models/race-0');
    expect((await call('POST', `${JOBS}/race-again:cancel`)).status).toBe(200);
  }, 300_000);

  it('trainer jobs cancelled right after create end CANCELLED too, with no pod left', async () => {
    const TRAINERS = '/v1/accounts/acme/rlorTrainerJobs';
    const ids = ['tr-0', 'tr-1', 'tr-2', 'tr-3'];
    await Promise.all(
      ids.map(async (id, i) => {
        const created = await call('POST', `${TRAINERS}?rlorTrainerJobId=${id}`, {
          baseModel: 'accounts/temper/models/byte-lm-3m',
        });
        expect(created.status, JSON.stringify(created.json)).toBe(200);
        if (i % 2 === 1)
          while ((await call('GET', `${TRAINERS}/${id}`)).json.state === 'JOB_STATE_PENDING')
            await new Promise((r) => setTimeout(r, 10));
        expect((await call('POST', `${TRAINERS}/${id}:cancel`)).status).toBe(200);
      }),
    );
    for (const id of ids)
      await stack.platform.client.workflow
        .getHandle(workflowIdOf({ collection: 'rlorTrainerJobs', account: 'acme', id }))
        .result()
        .catch(() => undefined);
    await new Promise((r) => setTimeout(r, 2_000));
    for (const id of ids)
      expect((await call('GET', `${TRAINERS}/${id}`)).json.state, id).toBe('JOB_STATE_CANCELLED');
    await waitFor(
      'no running pods',
      async () =>
        (await stack.platform.launcher.list()).every((p) => p.state !== 'running')
          ? true
          : undefined,
      30_000,
    );
  }, 60_000);

  it('deletes a job whose workflow closed without recording its end', async () => {
    // A row left non-final by a workflow that is gone (the situation the guard now prevents,
    // still possible after e.g. a store restored from an old backup).
    await stack.platform.store.create('supervisedFineTuningJobs', 'acme', 'orphan', {
      ...jobBody(99),
      state: 'JOB_STATE_RUNNING',
    });
    const deleted = await call('DELETE', `${JOBS}/orphan`);
    expect(deleted.status, JSON.stringify(deleted.json)).toBe(200);
    // A job whose workflow is running is still refused.
    const created = await call('POST', `${JOBS}?supervisedFineTuningJobId=live`, jobBody(98));
    expect(created.status).toBe(200);
    const refused = await call('DELETE', `${JOBS}/live`);
    expect(refused.status).toBe(400);
    expect(String((refused.json.error as Json).message)).toMatch(/cancel it first/);
    await call('POST', `${JOBS}/live:cancel`);
  }, 60_000);
});

// The control-plane REST shapes the Fireworks training SDK sends (specs/fireworks-sdk.md §2-3):
// rlorTrainerJob create with `trainingConfig` and `?trainingShape=`, hosted-only fields
// accepted and dropped, wrong values refused by name; `:resume` of a stopped trainer from any
// of FAILED, CANCELLED, PAUSED and COMPLETED (managed jobs keep refusing CANCELLED); and
// `accounts/{a}/checkpoints/{c}:promote` with the SDK's snake_case body.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './harness.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

/** The body TrainerJobManager.create sends (trainer.py), without a shape. */
const sdkBody = (config: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  serviceMode: true,
  keepAlive: false,
  dataset: '',
  trainingConfig: { baseModel: BASE, loraRank: 0, learningRate: 1e-5, ...config },
  useReservation: true,
  displayName: 'sdk',
  inactivityTimeout: '1800s',
  ...extra,
});

describe('rlorTrainerJobs with the SDK body', () => {
  it('flattens trainingConfig, drops hosted-only fields and takes the shape from the query', async () => {
    const r = await h.call(
      'POST',
      '/v1/accounts/alice/rlorTrainerJobs?trainingShape=accounts/temper/trainingShapes/byte-lm-3m-lora&rlorTrainerJobId=training-api-service-0a1b2c3d',
      {
        body: sdkBody(
          { loraRank: 8, customImageTag: 'x', extraArgs: ['--a'], projectionHeadDim: 0 },
          { preemptible: true, managedBy: 'sdk', extraValues: {}, trainerReplicaCount: 1 },
        ),
      },
    );
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toMatchObject({
      name: 'accounts/alice/rlorTrainerJobs/training-api-service-0a1b2c3d',
      state: 'JOB_STATE_PENDING',
      baseModel: BASE,
      loraRank: 8,
      learningRate: 1e-5,
      trainingShapeRef: 'accounts/temper/trainingShapes/byte-lm-3m-lora',
      replicaCount: 1,
      inactivityTimeout: '1800s',
      maxContextLength: 512,
    });
    for (const dropped of [
      'serviceMode',
      'keepAlive',
      'useReservation',
      'preemptible',
      'trainingConfig',
    ])
      expect(r.json).not.toHaveProperty(dropped);
  });

  it('refuses wrong values by name and conflicting duplicates', async () => {
    const bad = await h.call('POST', '/v1/accounts/alice/rlorTrainerJobs', {
      body: sdkBody({ loraRank: -1 }),
    });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toBe('loraRank: Too small: expected number to be >=0');
    const both = await h.call('POST', '/v1/accounts/alice/rlorTrainerJobs', {
      body: sdkBody({}, { baseModel: 'accounts/temper/models/other' }),
    });
    expect(both.json.error.message).toBe(
      'baseModel is given both at the top level and in trainingConfig, with different values',
    );
    const unknown = await h.call('POST', '/v1/accounts/alice/rlorTrainerJobs', {
      body: sdkBody({ warpDrive: true }),
    });
    expect(unknown.json.error.message).toBe('body: unknown field(s) warpDrive');
    const shape = await h.call(
      'POST',
      '/v1/accounts/alice/rlorTrainerJobs?trainingShape=accounts/temper/trainingShapes/byte-lm-3m-reference',
      { body: sdkBody() },
    );
    expect(shape.json.error.message).toBe(
      'trainingShapeRef: accounts/temper/trainingShapes/byte-lm-3m-reference is a FORWARD_ONLY shape; this trainer needs POLICY_TRAINER',
    );
  });

  it.each(['JOB_STATE_FAILED', 'JOB_STATE_CANCELLED', 'JOB_STATE_PAUSED', 'JOB_STATE_COMPLETED'])(
    'resumes a trainer that is %s',
    async (state) => {
      const id = `t-${state.slice(10).toLowerCase()}`;
      await h.store.create('rlorTrainerJobs', 'alice', id, { state, baseModel: BASE });
      const r = await h.call('POST', `/v1/accounts/alice/rlorTrainerJobs/${id}:resume`);
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(r.json.state).toBe('JOB_STATE_PENDING');
      expect(h.orchestrator.calls.at(-1)).toEqual({
        op: 'resume',
        arg: { collection: 'rlorTrainerJobs', account: 'alice', id },
      });
    },
  );

  it('still refuses to resume a cancelled managed job', async () => {
    await h.store.create('supervisedFineTuningJobs', 'alice', 'sft-c', {
      state: 'JOB_STATE_CANCELLED',
    });
    const r = await h.call('POST', '/v1/accounts/alice/supervisedFineTuningJobs/sft-c:resume');
    expect(r.status).toBe(400);
    expect(r.json.error.message).toMatch(/was cancelled and cannot be resumed/);
  });
});

describe('checkpoints/{c}:promote as the SDK sends it', () => {
  it('names the trainer job and output model as resource names of the same account', async () => {
    const wrong = await h.call('POST', '/v1/accounts/alice/checkpoints/snap-1:promote', {
      body: {
        output_model: 'accounts/bob/models/m',
        trainer_job_id: 'accounts/alice/rlorTrainerJobs/t1',
        base_model: BASE,
        async_promotion: true,
      },
    });
    expect(wrong.status).toBe(400);
    expect(wrong.json.error.message).toBe(
      "output_model: 'accounts/bob/models/m' is not in accounts/alice, the account in the path",
    );
    const missing = await h.call('POST', '/v1/accounts/alice/checkpoints/snap-1:promote', {
      body: {
        output_model: 'accounts/alice/models/m',
        trainer_job_id: 'accounts/alice/rlorTrainerJobs/t1',
        base_model: BASE,
        async_promotion: true,
      },
    });
    expect(missing.status).toBe(404);
    expect(missing.json.error.message).toMatch(
      /^checkpoint accounts\/alice\/rlorTrainerJobs\/t1\/checkpoints\/snap-1 does not exist/,
    );
  });
});

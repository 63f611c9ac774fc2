// The training settings at the REST boundary: every job collection refuses an out-of-range
// setting with the message of the setting's one schema (src/recipes/fields.ts), creates
// nothing, and stores every default resolved from the same definitions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fields as F } from '../../src/recipes/index.js';
import { dpoRows, type Harness, readyDataset, rftRows, sftRows, startHarness } from './harness.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
let h: Harness;

beforeAll(async () => {
  h = await startHarness();
  await readyDataset(h, 'sft-data', sftRows(5));
  await readyDataset(h, 'dpo-data', dpoRows(3));
  await readyDataset(h, 'rft-data', rftRows(4));
  const e = await h.call('POST', '/v1/accounts/alice/evaluators', {
    body: { evaluatorId: 'exact', evaluator: { source: 'export default () => 1;\n' } },
  });
  expect(e.status).toBe(200);
});
afterAll(() => h.close());

/** The message a schema gives for `value`: what the REST layer must answer, word for word. */
function schemaMessage(schema: { safeParse(x: unknown): unknown }, value: unknown): string {
  const r = schema.safeParse(value) as { error?: { issues: { message: string }[] } };
  const message = r.error?.issues[0]?.message;
  if (!message) throw new Error(`${JSON.stringify(value)} is valid`);
  return message;
}

const BODIES: Record<string, Record<string, unknown>> = {
  supervisedFineTuningJobs: { baseModel: BASE, dataset: 'sft-data' },
  dpoJobs: { baseModel: BASE, dataset: 'dpo-data' },
  orpoJobs: { baseModel: BASE, dataset: 'dpo-data' },
  reinforcementFineTuningJobs: { baseModel: BASE, dataset: 'rft-data', evaluator: 'exact' },
  rlorTrainerJobs: { baseModel: BASE },
};
const JOB = ['supervisedFineTuningJobs', 'dpoJobs', 'orpoJobs'];

/** [collections, field, bad value, its schema]: the spec's ranges, one row per setting. */
const CASES: [string[], string, unknown, { safeParse(x: unknown): unknown }][] = [
  [JOB, 'learningRate', 2, F.learningRate.job.schema],
  [['rlorTrainerJobs'], 'learningRate', 0, F.learningRate.trainer.schema],
  [['reinforcementFineTuningJobs'], 'learningRate', 1e-2, F.learningRate.rft.schema],
  [JOB, 'epochs', 0, F.epochs.job.schema],
  [['reinforcementFineTuningJobs'], 'epochs', 11, F.epochs.rft.schema],
  [JOB, 'loraRank', 12, F.loraRank.job.schema],
  [['reinforcementFineTuningJobs'], 'loraRank', 64, F.loraRank.rft.schema],
  [['rlorTrainerJobs'], 'loraRank', 512, F.loraRank.trainer.schema],
  [
    [...JOB, 'reinforcementFineTuningJobs', 'rlorTrainerJobs'],
    'maxContextLength',
    8,
    F.maxContextLength.schema,
  ],
  [JOB, 'batchSize', 0, F.batchSize.job.schema],
  [JOB, 'learningRateWarmupSteps', -1, F.learningRateWarmupSteps.schema],
  [JOB, 'gradientAccumulationSteps', 0, F.gradientAccumulationSteps.schema],
  [JOB, 'checkpointFrequency', -1, F.checkpointFrequency.schema],
  [JOB, 'seed', -1, F.seed.schema],
  [['dpoJobs'], 'beta', 0.7, F.dpoBeta.schema],
  [['orpoJobs'], 'orpoLambda', -1, F.orpoLambda.schema],
  [['reinforcementFineTuningJobs'], 'chunkSize', 0, F.chunkSize.schema],
  [['reinforcementFineTuningJobs'], 'temperature', 0, F.temperature.schema],
  [['reinforcementFineTuningJobs'], 'topP', 0, F.topP.schema],
  [['reinforcementFineTuningJobs'], 'topK', -1, F.topK.schema],
  [['reinforcementFineTuningJobs'], 'n', 1, F.responseCandidatesCount.schema],
  [['reinforcementFineTuningJobs'], 'responseCandidatesCount', 1, F.responseCandidatesCount.schema],
  [['reinforcementFineTuningJobs'], 'maxTokens', 8, F.maxTokens.schema],
  [['reinforcementFineTuningJobs'], 'maxConcurrentRollouts', 0, F.maxConcurrentRollouts.schema],
  [['reinforcementFineTuningJobs'], 'rolloutTimeout', 'soon', F.rolloutTimeout.schema],
  [
    [...JOB, 'reinforcementFineTuningJobs', 'rlorTrainerJobs'],
    'baseDtype',
    'float16',
    F.baseDtype.schema,
  ],
  [
    [...JOB, 'reinforcementFineTuningJobs', 'rlorTrainerJobs'],
    'recompute',
    'yes',
    F.recompute.schema,
  ],
];

describe('settings at the REST boundary', () => {
  const rows = CASES.flatMap(([collections, field, value, schema]) =>
    collections.map((c) => [c, field, value, schema] as const),
  );

  it.each(rows)(
    '%s refuses %s = %j with its schema’s message',
    async (collection, field, value, schema) => {
      const id = `bad-${field.toLowerCase()}`;
      const singular = collection.replace(/s$/, '');
      const r = await h.call('POST', `/v1/accounts/alice/${collection}?${singular}Id=${id}`, {
        body: { ...BODIES[collection], [field]: value },
      });
      expect(r.status, JSON.stringify(r.json)).toBe(400);
      const message = schemaMessage(schema, value);
      // A range message of the spec stands alone; zod's own words name the field.
      expect([message, `${field}: ${message}`]).toContain(r.json.error.message);
      expect((await h.call('GET', `/v1/accounts/alice/${collection}/${id}`)).status).toBe(404);
    },
  );

  it('names every bad setting at once', async () => {
    const r = await h.call('POST', '/v1/accounts/alice/supervisedFineTuningJobs', {
      body: { ...BODIES.supervisedFineTuningJobs, learningRate: 2, epochs: 0, loraRank: 12 },
    });
    expect(r.json.error.message).toBe(
      [
        schemaMessage(F.epochs.job.schema, 0),
        schemaMessage(F.learningRate.job.schema, 2),
        schemaMessage(F.loraRank.job.schema, 12),
      ].join('; '),
    );
    expect(r.json.error.details).toHaveLength(3);
  });

  it('stores the defaults of the one definitions', async () => {
    const orpo = await h.call('POST', '/v1/accounts/alice/orpoJobs?orpoJobId=orpo-defaults', {
      body: BODIES.orpoJobs,
    });
    expect(orpo.status, JSON.stringify(orpo.json)).toBe(200);
    expect(orpo.json).toMatchObject({
      state: 'JOB_STATE_PENDING',
      baseDtype: F.baseDtype.default,
      recompute: F.recompute.default,
      orpoLambda: F.orpoLambda.default,
      epochs: F.epochs.job.default,
      loraRank: F.loraRank.job.default,
      learningRate: F.learningRate.job.default(F.loraRank.job.default),
      batchSize: F.batchSize.job.default,
      trainingShape: 'accounts/temper/trainingShapes/byte-lm-3m-lora',
    });
    // Full-parameter RFT: rank 0 is accepted and trains on the full-parameter shape.
    const full = await h.call(
      'POST',
      '/v1/accounts/alice/reinforcementFineTuningJobs?reinforcementFineTuningJobId=rft-full',
      { body: { ...BODIES.reinforcementFineTuningJobs, loraRank: 0 } },
    );
    expect(full.status, JSON.stringify(full.json)).toBe(200);
    expect(full.json).toMatchObject({
      loraRank: 0,
      learningRate: F.learningRate.rft.default,
      batchSize: F.batchSize.rft.default,
      temperature: F.temperature.default,
      responseCandidatesCount: F.responseCandidatesCount.default,
      rolloutTimeout: F.rolloutTimeout.default,
      trainingShape: 'accounts/temper/trainingShapes/byte-lm-3m-full',
    });
  });

  it('refuses a bfloat16 base on a full-parameter job, naming the field', async () => {
    // loraRank 0 given, and left to a trainer's default (full-parameter unless asked).
    const cases: [string, Record<string, unknown>][] = [
      ['rlorTrainerJobs', { loraRank: 0 }],
      ['rlorTrainerJobs', {}],
      ...[...JOB, 'reinforcementFineTuningJobs'].map(
        (c) => [c, { loraRank: 0 }] as [string, Record<string, unknown>],
      ),
    ];
    for (const [k, [collection, extra]] of cases.entries()) {
      const id = `bf16-full-${k}`;
      const singular = collection.replace(/s$/, '');
      const r = await h.call('POST', `/v1/accounts/alice/${collection}?${singular}Id=${id}`, {
        body: { ...BODIES[collection], ...extra, baseDtype: 'bfloat16' },
      });
      expect(r.status, JSON.stringify(r.json)).toBe(400);
      expect(r.json.error.message).toBe(F.baseDtypeIssue('bfloat16', 0));
      expect(r.json.error.message).toMatch(/^baseDtype 'bfloat16' .*loraRank/);
      expect((await h.call('GET', `/v1/accounts/alice/${collection}/${id}`)).status).toBe(404);
    }
    expect(h.orchestrator.calls.filter((c) => /bf16-/.test(JSON.stringify(c)))).toEqual([]);
  });

  it('stores a trainer’s engine settings, defaults from the engine’s schema', async () => {
    const plain = await h.call(
      'POST',
      '/v1/accounts/alice/rlorTrainerJobs?rlorTrainerJobId=eng-default',
      {
        body: BODIES.rlorTrainerJobs,
      },
    );
    expect(plain.status, JSON.stringify(plain.json)).toBe(200);
    expect(plain.json).toMatchObject({
      baseDtype: F.baseDtype.default,
      recompute: F.recompute.default,
    });
    expect([F.baseDtype.default, F.recompute.default]).toEqual(['float32', false]);
    const lora = await h.call(
      'POST',
      '/v1/accounts/alice/rlorTrainerJobs?rlorTrainerJobId=eng-bf16',
      {
        body: { ...BODIES.rlorTrainerJobs, loraRank: 8, baseDtype: 'bfloat16', recompute: true },
      },
    );
    expect(lora.status, JSON.stringify(lora.json)).toBe(200);
    expect(lora.json).toMatchObject({ loraRank: 8, baseDtype: 'bfloat16', recompute: true });
  });
});

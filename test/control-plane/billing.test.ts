// The billing export over a real SQLite store: usage recorded with the public helper, then
// `GET /v1/accounts/{a}/billing:exportMetrics` read back as CSV, its validation messages and
// its account scoping.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrapAccount } from '../../src/control-plane/index.js';
import {
  FINE_TUNING_USAGE,
  TEXT_COMPLETION_INFERENCE_USAGE,
  TRAINER_USAGE,
  usageEvent,
} from '../../src/control-plane/usage.js';
import { type Harness, startHarness } from './harness.js';

const HEADER =
  'email,start_time,end_time,usage_type,accelerator_type,accelerator_seconds,base_model_name,model_bucket,parameter_count,prompt_tokens,completion_tokens';

let h: Harness;
let carol = '';

beforeAll(async () => {
  h = await startHarness();
  carol = (await bootstrapAccount(h.store, 'carol', { displayName: 'carol@example.com' })).apiKey;
  await h.store.recordUsage([
    usageEvent({
      account: 'alice',
      usageType: FINE_TUNING_USAGE,
      source: 'accounts/alice/supervisedFineTuningJobs/sft-1',
      startTime: '2025-10-20T17:16:48.900Z',
      endTime: '2025-10-20T17:20:00Z',
      acceleratorType: 'CPU',
      acceleratorSeconds: 0.1 + 0.2,
      baseModelName: 'accounts/temper/models/byte-lm-3m',
      parameterCount: 3_000_000,
    }),
    usageEvent({
      account: 'alice',
      usageType: TEXT_COMPLETION_INFERENCE_USAGE,
      startTime: new Date('2025-10-19T08:00:00Z'),
      baseModelName: 'accounts/fireworks/models/llama4-maverick-instruct-basic',
      modelBucket: 'Llama 4 "Maverick", Basic',
      parameterCount: 401_583_781_376,
      promptTokens: 803,
      completionTokens: 109,
    }),
    usageEvent({
      account: 'alice',
      usageType: TRAINER_USAGE,
      startTime: '2025-11-02T00:00:00Z',
      acceleratorType: 'CPU',
      acceleratorSeconds: 60,
    }),
    usageEvent({ account: 'bob', usageType: TRAINER_USAGE, startTime: '2025-10-20T00:00:00Z' }),
    usageEvent({ account: 'carol', usageType: TRAINER_USAGE, startTime: '2025-10-20T00:00:00Z' }),
  ]);
});

afterAll(async () => {
  await h?.close();
});

function exportUrl(account: string, query: Record<string, string>): string {
  return `/v1/accounts/${account}/billing:exportMetrics?${new URLSearchParams(query)}`;
}

/** The raw response: the harness's call() parses JSON, and a success here is CSV. */
async function exportCsv(account: string, query: Record<string, string>, key = h.alice) {
  const res = await h.cp.app.inject({
    method: 'GET',
    url: exportUrl(account, query),
    headers: { authorization: `Bearer ${key}` },
  });
  return { status: res.statusCode, type: res.headers['content-type'], body: res.body };
}

const october = { startTime: '2025-10-01', endTime: '2025-11-01' };

describe('billing:exportMetrics', () => {
  it("answers the product's header and one row per event of the account, oldest first", async () => {
    const res = await exportCsv('alice', october);
    expect(res.status).toBe(200);
    expect(res.type).toBe('text/csv; charset=utf-8');
    expect(res.body).toBe(
      [
        HEADER,
        ',2025-10-19 08:00:00 UTC,2025-10-19 08:00:00 UTC,TEXT_COMPLETION_INFERENCE_USAGE,,,accounts/fireworks/models/llama4-maverick-instruct-basic,"Llama 4 ""Maverick"", Basic",401583781376,803,109',
        ',2025-10-20 17:16:48 UTC,2025-10-20 17:20:00 UTC,FINE_TUNING_USAGE,CPU,0.3,accounts/temper/models/byte-lm-3m,,3000000,,',
        '',
      ].join('\n'),
    );
  });

  it("fills email with the account's display name when it is an email address", async () => {
    const res = await exportCsv('carol', october, carol);
    expect(res.body.split('\n')[1]).toBe(
      'carol@example.com,2025-10-20 00:00:00 UTC,2025-10-20 00:00:00 UTC,TRAINER_USAGE,,,,,,,',
    );
  });

  it('takes [start, end): RFC 3339 with offsets, and a range with no events is the header alone', async () => {
    const later = await exportCsv('alice', {
      startTime: '2025-10-20T19:16:48.900+02:00',
      endTime: '2025-11-02T00:00:00Z',
    });
    expect(later.body.split('\n').slice(1, -1)).toHaveLength(1);
    expect(later.body).toContain('FINE_TUNING_USAGE');
    const empty = await exportCsv('alice', { startTime: '2024-01-01', endTime: '2024-02-01' });
    expect(empty).toMatchObject({ status: 200, body: `${HEADER}\n` });
  });

  it('allows exactly 31 days', async () => {
    const res = await exportCsv('alice', { startTime: '2025-10-02', endTime: '2025-11-02' });
    expect(res.status).toBe(200);
  });

  const refusals: [Record<string, string>, RegExp][] = [
    [{ endTime: '2025-01-31' }, /^startTime is required: a date \(2025-01-01\) or an RFC 3339/],
    [{ startTime: '2025-01-01' }, /^endTime is required/],
    [{ startTime: '', endTime: '2025-01-31' }, /^startTime is required/],
    [{ startTime: 'last week', endTime: '2025-01-31' }, /^startTime "last week" is not a date/],
    [{ startTime: '2025-01-01', endTime: '2025-02-30' }, /^endTime "2025-02-30" is not a date/],
    [
      { startTime: '2025-01-01T00:00:00', endTime: '2025-01-31' },
      /^startTime "2025-01-01T00:00:00" is not/,
    ],
    [
      { startTime: '2025-01-31', endTime: '2025-01-31' },
      /^endTime \(2025-01-31T00:00:00.000Z\) must be after startTime \(2025-01-31T00:00:00.000Z\)$/,
    ],
    [{ startTime: '2025-02-01', endTime: '2025-01-01' }, /^endTime .* must be after startTime/],
    [
      { startTime: '2025-01-01', endTime: '2025-02-01T00:00:01Z' },
      /^the range from 2025-01-01T00:00:00.000Z to 2025-02-01T00:00:01.000Z is longer than 31 days: export at most 31 days at once, in 31-day chunks$/,
    ],
    [{ startTime: '2025-01-01', endTime: '2025-07-01' }, /is longer than 31 days/],
  ];

  it.each(refusals)('refuses %j with INVALID_ARGUMENT', async (query, message) => {
    const res = await h.call('GET', exportUrl('alice', query));
    expect(res.status).toBe(400);
    expect(res.json.error.status).toBe('INVALID_ARGUMENT');
    expect(res.json.error.message).toMatch(message);
  });

  it('answers 404 for another account and for the catalog account, 401 without a key', async () => {
    for (const account of ['bob', 'temper', 'nobody']) {
      const res = await h.call('GET', exportUrl(account, october));
      expect(res.status).toBe(404);
      expect(res.json.error).toMatchObject({
        status: 'NOT_FOUND',
        message: `accounts/${account}/billing not found`,
      });
    }
    // Scoping comes before validation: a bad query on another account is still 404.
    expect((await h.call('GET', exportUrl('bob', {}))).status).toBe(404);
    expect((await h.call('GET', exportUrl('alice', october), { key: null })).status).toBe(401);
    const bob = await exportCsv('bob', october, h.bob);
    expect(bob.body.split('\n').slice(1, -1)).toHaveLength(1);
  });
});

describe('usageEvent', () => {
  it('builds the same id from the same fields, so recording again meters once', async () => {
    const fields = {
      account: 'alice',
      usageType: TRAINER_USAGE,
      source: 'accounts/alice/rlorTrainerJobs/t1',
      startTime: new Date('2025-09-01T00:00:00Z'),
      endTime: '2025-09-01T00:01:00+00:00',
      acceleratorSeconds: 60,
      promptTokens: undefined,
    } as const;
    const event = usageEvent(fields);
    expect(event).toEqual({
      id: expect.stringMatching(/^use-[0-9a-f]{32}$/),
      account: 'alice',
      usageType: 'TRAINER_USAGE',
      source: 'accounts/alice/rlorTrainerJobs/t1',
      startTime: '2025-09-01T00:00:00.000Z',
      endTime: '2025-09-01T00:01:00.000Z',
      acceleratorSeconds: 60,
    });
    expect('promptTokens' in event).toBe(false);
    expect(usageEvent({ ...fields, startTime: '2025-09-01T00:00:00Z' }).id).toBe(event.id);
    expect(usageEvent({ ...fields, acceleratorSeconds: 61 }).id).not.toBe(event.id);
    expect(usageEvent({ ...fields, id: 'mine' }).id).toBe('mine');
    await h.store.recordUsage([event]);
    await h.store.recordUsage([usageEvent(fields)]);
    const september = { startTime: '2025-09-01T00:00:00Z', endTime: '2025-09-02T00:00:00Z' };
    expect(await h.store.listUsage('alice', september)).toEqual([event]);
  });
});

// The dashboard's reads through REST on the real platform: an SFT job's events stream
// (state changes and metric rows while it runs) and render samples; an RFT job's rollouts,
// paged and filtered. Another account's key gets 404 on every one of them.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogDatasetPath } from '../../src/catalog/bundled.js';
import { type Json, type RestStack, startRestStack } from '../support/rest-stack.js';

let stack: RestStack;

beforeAll(async () => {
  stack = await startRestStack({ accounts: ['acme', 'other'] });
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const call: RestStack['call'] = (...args) => stack.call(...args);

interface SseEvent {
  event: string;
  data: Json;
}

/** Reads a server-sent-events stream to its end. */
async function readEvents(
  path: string,
  key = stack.keys.acme,
): Promise<{ status: number; events: SseEvent[] }> {
  const res = await fetch(`${stack.base}${path}`, { headers: { authorization: `Bearer ${key}` } });
  if (res.status !== 200) return { status: res.status, events: [] };
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const text = await res.text();
  const events = text
    .split('\n\n')
    .filter((block) => block.startsWith('event: '))
    .map((block) => {
      const [head, data] = block.split('\n');
      return {
        event: head!.slice('event: '.length),
        data: JSON.parse(data!.slice('data: '.length)),
      };
    });
  return { status: 200, events };
}

async function waitForJob(path: string, timeoutMs = 240_000): Promise<Json> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { json } = await call('GET', path);
    if (/COMPLETED|FAILED|CANCELLED|EARLY_STOPPED/.test(String(json.state))) return json;
    if (Date.now() > deadline) throw new Error(`${path} still ${String(json.state)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('job views through the REST API', () => {
  it('streams an SFT job from PENDING to COMPLETED with its metric rows as they come', async () => {
    await stack.uploadDataset(
      'sure',
      readFileSync(catalogDatasetPath('accounts/temper/datasets/sure-answers-sft'), 'utf8'),
    );
    const job = '/v1/accounts/acme/supervisedFineTuningJobs/sft-views';
    const created = await call(
      'POST',
      '/v1/accounts/acme/supervisedFineTuningJobs?supervisedFineTuningJobId=sft-views',
      {
        baseModel: 'accounts/temper/models/byte-lm-3m',
        dataset: 'accounts/acme/datasets/sure',
        outputModel: 'accounts/acme/models/sure-views',
        batchSize: 1024,
        epochs: 2,
        learningRate: 5e-4,
        loraRank: 0,
      },
    );
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    // Another account cannot open the stream (nor any view) of the job.
    for (const view of ['events', 'rollouts', 'renderSamples'])
      expect((await call('GET', `${job}/${view}`, undefined, stack.keys.other)).status).toBe(404);

    const { events } = await readEvents(`${job}/events`);
    const states = events.filter((e) => e.event === 'state').map((e) => e.data.state);
    expect(states[0]).toMatch(/PENDING|VALIDATING|RUNNING/);
    expect(states).toContain('JOB_STATE_RUNNING');
    expect(states.at(-1)).toBe('JOB_STATE_COMPLETED');
    expect(events.at(-1)).toEqual({ event: 'end', data: { state: 'JOB_STATE_COMPLETED' } });
    // Metric rows came in several events while the job ran, each step's last version
    // matching what /metrics serves once it is done.
    const batches = events.filter((e) => e.event === 'metrics');
    expect(batches.length).toBeGreaterThan(1);
    const streamed = new Map<number, Json>();
    for (const b of batches)
      for (const m of b.data.metrics as { step: number; values: Json }[])
        streamed.set(m.step, m.values);
    const stored = (await call('GET', `${job}/metrics`)).json.metrics as {
      step: number;
      values: Json;
    }[];
    expect(stored.length).toBeGreaterThan(1);
    expect(Object.fromEntries(streamed)).toEqual(
      Object.fromEntries(stored.map((m) => [m.step, m.values])),
    );
    // A stream opened after the end replays from ?afterStep= and ends at once.
    const last = stored.at(-1)!.step;
    const replay = await readEvents(`${job}/events?afterStep=${last - 1}`);
    expect(replay.events.map((e) => e.event)).toEqual(['state', 'metrics', 'end']);
    expect((replay.events[1]!.data.metrics as { step: number }[]).map((m) => m.step)).toEqual([
      last,
    ]);

    // Render samples: tokens, their text and the loss weights of the first records.
    const samples = (await call('GET', `${job}/renderSamples`)).json.renderSamples as Json[];
    expect(samples.length).toBeGreaterThan(0);
    const s = samples[0]!;
    expect((s.token_ids as number[]).length).toBe((s.decoded_tokens as string[]).length);
    expect((s.token_weights as number[]).some((w) => w > 0)).toBe(true);
    expect((s.token_weights as number[]).some((w) => w === 0)).toBe(true);
    // An SFT job has no rollouts.
    expect((await call('GET', `${job}/rollouts`)).json).toEqual({
      rollouts: [],
      nextPageToken: '',
      totalSize: 0,
    });
  }, 300_000);

  it('pages and filters an RFT job rollouts by step and score', async () => {
    await stack.uploadDataset(
      'questions',
      ['What is the capital of Peru?', 'What color is snow?', 'What is 2+2?']
        .map((q) => JSON.stringify({ messages: [{ role: 'user', content: q }] }))
        .join('\n'),
    );
    expect(
      (
        await call('POST', '/v1/accounts/acme/evaluators', {
          evaluatorId: 'long-answers',
          evaluator: {
            source: 'export default ({ completion }) => Math.min(1, completion.length / 40);',
            sourceFilename: 'score.js',
          },
        })
      ).status,
    ).toBe(200);
    const job = '/v1/accounts/acme/reinforcementFineTuningJobs/rft-views';
    const created = await call(
      'POST',
      '/v1/accounts/acme/reinforcementFineTuningJobs?reinforcementFineTuningJobId=rft-views',
      {
        baseModel: 'accounts/temper/models/byte-lm-3m',
        dataset: 'accounts/acme/datasets/questions',
        evaluator: 'accounts/acme/evaluators/long-answers',
        outputModel: 'accounts/acme/models/questions-views',
        responseCandidatesCount: 4,
        maxTokens: 24,
        temperature: 1,
        loraRank: 4,
        epochs: 3,
      },
    );
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    expect((await waitForJob(job)).state).toBe('JOB_STATE_COMPLETED');

    const everything = (await call('GET', `${job}/rollouts?pageSize=200`)).json;
    const all = everything.rollouts as {
      step: number;
      score: number;
      completion: string;
      rowId: string;
      candidate: number;
    }[];
    expect(everything.totalSize).toBe(all.length);
    const steps = [...new Set(all.map((r) => r.step))];
    expect(steps.length).toBeGreaterThan(1);
    // Step filter.
    const step2 = (await call('GET', `${job}/rollouts?step=2`)).json.rollouts as typeof all;
    expect(step2.length).toBeGreaterThan(0);
    expect(step2).toEqual(all.filter((r) => r.step === 2));
    // 4 candidates per prompt.
    expect(step2.length % 4).toBe(0);
    // Score filter matches filtering the whole list.
    const median = [...all.map((r) => r.score)].sort((a, b) => a - b)[Math.floor(all.length / 2)]!;
    const high = (await call('GET', `${job}/rollouts?minScore=${median}&pageSize=200`)).json
      .rollouts as typeof all;
    expect(high).toEqual(all.filter((r) => r.score >= median));
    // Pages of 5 cover the list once, in order.
    const paged: typeof all = [];
    let token = '';
    do {
      const page = (await call('GET', `${job}/rollouts?pageSize=5&pageToken=${token}`)).json;
      paged.push(...(page.rollouts as typeof all));
      token = String(page.nextPageToken);
    } while (token);
    expect(paged).toEqual(all);
    // Bad filters name the problem.
    const bad = await call('GET', `${job}/rollouts?minScore=1&maxScore=0`);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.json)).toMatch(/minScore \(1\) is above maxScore \(0\)/);
    expect((await call('GET', `${job}/rollouts?step=zero`)).status).toBe(400);
    // A page token from another filter is refused.
    const first = (await call('GET', `${job}/rollouts?pageSize=5`)).json;
    expect(
      (await call('GET', `${job}/rollouts?pageSize=5&step=1&pageToken=${first.nextPageToken}`))
        .status,
    ).toBe(400);
    expect((await call('GET', `${job}/rollouts`, undefined, stack.keys.other)).status).toBe(404);
  }, 300_000);

  it('ends an open stream when the control plane closes, so close does not wait for the job', async () => {
    const created = await call('POST', '/v1/accounts/acme/rlorTrainerJobs?rlorTrainerJobId=open', {
      baseModel: 'accounts/temper/models/byte-lm-3m',
      loraRank: 0,
    });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const path = '/v1/accounts/acme/rlorTrainerJobs/open';
    for (let i = 0; i < 300 && (await call('GET', path)).json.state !== 'JOB_STATE_RUNNING'; i++)
      await new Promise((r) => setTimeout(r, 100));
    const res = await fetch(`${stack.base}${path}/events`, {
      headers: { authorization: `Bearer ${stack.keys.acme}` },
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const first = await reader.read();
    expect(first.value).toContain('JOB_STATE_RUNNING');
    // The job is still running: only the server closing ends the stream.
    await stack.controlPlane.close();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += r.value;
    expect(rest).not.toContain('event: end');
  }, 120_000);
});

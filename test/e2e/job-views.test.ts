// The dashboard's reads through REST on the real platform: an SFT job's events stream
// (state changes and metric rows while it runs) and render samples; an RFT job's rollouts,
// paged and filtered. Another account's key gets 404 on every one of them.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogDatasetPath } from '../../src/catalog/bundled.js';
import { type Json, type RestStack, startRestStack } from '../support/rest-stack.js';
import { createRolloutJob } from '../support/rft-job.js';

let stack: RestStack;

beforeAll(async () => {
  stack = await startRestStack({ accounts: ['acme', 'other'] });
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const call: RestStack['call'] = (...args) => stack.call(...args);
const waitForJob: RestStack['waitForJob'] = (...args) => stack.waitForJob(...args);

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

describe('job views through the REST API', () => {
  it('streams an SFT job from PENDING to COMPLETED with its metric rows as they come', async () => {
    const sure = readFileSync(
      catalogDatasetPath('accounts/temper/datasets/sure-answers-sft'),
      'utf8',
    );
    await stack.uploadDataset('sure', sure);
    // The dataset's first lines, parsed, with their line numbers.
    const preview = await call('GET', '/v1/accounts/acme/datasets/sure/preview?limit=3');
    expect(preview.json).toEqual({
      dataset: 'accounts/acme/datasets/sure',
      lines: sure
        .split('\n')
        .slice(0, 3)
        .map((l, i) => ({ line: i + 1, record: JSON.parse(l) })),
    });
    expect((await call('GET', '/v1/accounts/acme/datasets/sure/preview?limit=0')).status).toBe(400);
    expect(
      (await call('GET', '/v1/accounts/acme/datasets/sure/preview', undefined, stack.keys.other))
        .status,
    ).toBe(404);
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
    // The log, followed from the start (read concurrently with the events stream).
    const followed = readEvents(`${job}/logs?follow=true`);
    // Another account cannot open the stream (nor any view) of the job.
    for (const view of ['events', 'rollouts', 'renderSamples', 'logs', 'logs?follow=true'])
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

    // The log: created, one line per metric row (its text the row's values), the end state;
    // the follower saw the same lines (a rewritten row again under its id), then `end`.
    const log = (await call('GET', `${job}/logs`)).json as {
      logs: { id: string; time: string; level: string; text: string }[];
      totalSize: number;
    };
    expect(log.logs[0]).toMatchObject({ id: 'created', level: 'INFO' });
    expect(log.logs[0]!.text).toContain('dataset accounts/acme/datasets/sure');
    expect(log.logs.at(-1)).toMatchObject({
      id: 'state-JOB_STATE_COMPLETED',
      text: 'state COMPLETED',
    });
    const metricLines = log.logs.filter((l) => l.id.startsWith('metrics-'));
    expect(metricLines.map((l) => l.id)).toEqual(stored.map((m) => `metrics-${m.step}`));
    const lossKey = Object.keys(stored[0]!.values).find((k) => k.startsWith('loss'))!;
    expect(metricLines[0]!.text).toContain(`${lossKey}=`);
    expect([...log.logs.map((l) => l.time)]).toEqual(log.logs.map((l) => l.time).sort());
    expect((await call('GET', `${job}/logs?tail=2`)).json.logs).toEqual(log.logs.slice(-2));
    expect((await call('GET', `${job}/logs?tail=0`)).status).toBe(400);
    const follow = await followed;
    expect(follow.status).toBe(200);
    expect(follow.events.at(-1)).toEqual({ event: 'end', data: { state: 'JOB_STATE_COMPLETED' } });
    const lastById = new Map<string, string>();
    for (const e of follow.events.filter((e) => e.event === 'log'))
      for (const l of e.data.lines as { id: string; text: string }[]) lastById.set(l.id, l.text);
    for (const l of log.logs.filter((l) => !l.id.startsWith('state-')))
      expect(lastById.get(l.id)).toBe(l.text);
    // It saw the job run, not only its end.
    expect(lastById.has('state-JOB_STATE_RUNNING')).toBe(true);
    expect(follow.events.filter((e) => e.event === 'log').length).toBeGreaterThan(1);

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
    const { path: job } = await createRolloutJob(stack, 'rft-views', { epochs: 3 });
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

// SYNC vs ASYNC weight swaps on real replica processes: 425 Too Early, drain timeouts,
// in-flight streams, prefill queue duration, and reset_prompt_cache.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TensorMap } from '../../src/checkpoints/safetensors.js';
import { DeploymentRegistry } from '../../src/deployments/index.js';
import {
  baseDir,
  baseTensors,
  headers,
  makeBucket,
  perturb,
  sse,
  waitLoaded,
  writeFull,
} from './fixtures.js';

// biome-ignore lint/suspicious/noExplicitAny: response JSON read loosely in assertions
type Json = Record<string, any>;

const registry = new DeploymentRegistry(undefined, { openGateways: true });
let bucket: { dir: string; url: string };
let w1: TensorMap;
let sync: { url: string; H: Record<string, string> };
let async_: { url: string; H: Record<string, string> };

async function post(
  d: { url: string; H: Record<string, string> },
  path: string,
  body: unknown,
  extra: Record<string, string> = {},
) {
  return fetch(`${d.url}${path}`, {
    method: 'POST',
    headers: { ...d.H, ...extra },
    body: JSON.stringify(body),
  });
}

async function stage(d: { url: string }): Promise<string> {
  const s = (await (await fetch(`${d.url}/hot_load/v1/models/hot_load`)).json()) as Json;
  return s.replicas[0].loading_state.stage as string;
}

async function until(pred: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > timeoutMs) throw new Error('timeout');
    await new Promise((r) => setTimeout(r, 5));
  }
}

beforeAll(async () => {
  bucket = await makeBucket();
  w1 = perturb(await baseTensors(), 11);
  await writeFull(bucket.dir, 's1', w1);
  await writeFull(bucket.dir, 's2', perturb(w1, 12));
  const common = {
    account: 'test',
    baseModel: 'accounts/temper/models/byte-lm-3m',
    baseModelDir: baseDir,
    minReplicaCount: 1,
    maxReplicaCount: 1,
  } as const;
  const [a, b] = await Promise.all([
    registry.create({
      ...common,
      deploymentId: 'sync',
      hotLoad: { bucketUrl: bucket.url, transitionType: 'SYNC' },
      replica: { stepDelayMs: 4 },
    }),
    registry.create({
      ...common,
      deploymentId: 'async',
      hotLoad: { bucketUrl: bucket.url, transitionType: 'ASYNC' },
      replica: { swapDelayMs: 600 },
    }),
  ]);
  sync = { url: a.gatewayUrl as string, H: headers(a.name) };
  async_ = { url: b.gatewayUrl as string, H: headers(b.name) };
}, 60_000);

afterAll(async () => {
  await registry.close();
});

describe('weight swap transitions', () => {
  it('SYNC: the in-flight stream finishes on the old weights; new requests get 425 during the swap', async () => {
    const stream = post(sync, '/inference/v1/completions', {
      prompt: 'Once upon',
      max_tokens: 150,
      ignore_eos: true,
      stream: true,
    });
    await new Promise((r) => setTimeout(r, 50));
    expect((await post(sync, '/hot_load/v1/models/hot_load', { identity: 's1' })).status).toBe(200);
    await until(async () => (await stage(sync)) === 'swapping');
    const early = await post(sync, '/inference/v1/completions', { prompt: 'x', max_tokens: 1 });
    expect(early.status).toBe(425);
    expect(early.headers.get('x-fireworks-hot-load-drain-timeout')).toBe('90');
    expect(((await early.json()) as Json).error.message).toMatch(/SYNC weight swap/);
    const events = (await sse(await stream)).slice(0, -1) as Json[];
    const toks = events.filter((e) => e.choices[0]?.token_ids?.length);
    expect(toks).toHaveLength(150);
    expect(new Set(toks.map((e) => e.snapshot_identity))).toEqual(new Set([null]));
    await waitLoaded(sync.url, 's1');
    const after = (await (
      await post(sync, '/inference/v1/completions', { prompt: 'x', max_tokens: 1 })
    ).json()) as Json;
    expect(after.snapshot_identity).toBe('s1');
  });

  it('ASYNC: new requests queue through the swap (prefill queue duration), or get 425 past their drain timeout', async () => {
    expect((await post(async_, '/hot_load/v1/models/hot_load', { identity: 's1' })).status).toBe(
      200,
    );
    await until(async () => (await stage(async_)) === 'swapping');
    const impatient = post(
      async_,
      '/inference/v1/completions',
      { prompt: 'x', max_tokens: 1 },
      { 'x-fireworks-hot-load-drain-timeout': '0.05' },
    );
    const patient = post(async_, '/inference/v1/completions', { prompt: 'x', max_tokens: 1 });
    const r1 = await impatient;
    expect(r1.status).toBe(425);
    expect(r1.headers.get('x-fireworks-hot-load-drain-timeout')).toBe('0.05');
    const r2 = await patient;
    expect(r2.status).toBe(200);
    const body = (await r2.json()) as Json;
    expect(body.snapshot_identity).toBe('s1');
    expect(body.server_timing.prefill_queue_duration).toBeGreaterThan(0.05);
    await waitLoaded(async_.url, 's1');
  });

  it('reset_prompt_cache: all drops reuse, none keeps it, new_session keeps it only for existing sessions', async () => {
    const prompt = 'A long shared system prompt for every rollout. Q:';
    const run = async (session: string) =>
      (
        (await (
          await post(
            async_,
            '/inference/v1/completions',
            { prompt: `${prompt} ${session}`, max_tokens: 2, temperature: 0 },
            { 'x-multi-turn-session-id': session },
          )
        ).json()) as Json
      ).usage.prompt_tokens_details.cached_tokens as number;
    await run('a');
    expect(await run('a')).toBeGreaterThan(40);
    const load = async (identity: string, reset: string) => {
      expect(
        (
          await post(async_, '/hot_load/v1/models/hot_load', {
            identity,
            reset_prompt_cache: reset,
          })
        ).status,
      ).toBe(200);
      await waitLoaded(async_.url, identity);
    };
    await load('s2', 'none');
    expect(await run('a')).toBeGreaterThan(40);
    await load('s1', 'new_session');
    expect(await run('b')).toBe(0); // a new session does not reuse pre-swap entries
    expect(await run('a')).toBeGreaterThan(40); // the existing session does
    await load('s2', 'all');
    expect(await run('a')).toBe(0);
  });

  it('a stream that lives through a swap with reset all leaves no old-weight KV for its next turn', async () => {
    const hdr = { 'x-multi-turn-session-id': 'across' };
    const prompt = 'A conversation that spans a weight swap:';
    const stream = post(
      async_,
      '/inference/v1/completions',
      { prompt, max_tokens: 300, ignore_eos: true, temperature: 0 },
      hdr,
    );
    await new Promise((r) => setTimeout(r, 20));
    expect(
      (
        await post(async_, '/hot_load/v1/models/hot_load', {
          identity: 's1',
          reset_prompt_cache: 'all',
        })
      ).status,
    ).toBe(200);
    const first = (await (await stream).json()) as Json;
    expect(first.snapshot_identity).toBe('s1'); // it ended on the new weights
    await waitLoaded(async_.url, 's1');
    const next = (await (
      await post(
        async_,
        '/inference/v1/completions',
        { prompt: `${prompt}${first.choices[0].text} and then`, max_tokens: 2 },
        hdr,
      )
    ).json()) as Json;
    expect(next.usage.prompt_tokens_details.cached_tokens).toBe(0);
  });
});

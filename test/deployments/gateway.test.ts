// A real deployment (gateway + 2 replica processes, ASYNC hot-load) over loopback HTTP.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TensorMap } from '../../src/checkpoints/safetensors.js';
import { DeploymentRegistry, type DeploymentResource } from '../../src/deployments/index.js';
import { startBucketDeployment } from '../support/gateways.js';
import {
  baseConfig,
  baseTensors,
  engineLogprobs,
  mae,
  perturb,
  sse,
  waitLoaded,
  waitSettled,
  writeDelta,
  writeFull,
} from './fixtures.js';

const registry = new DeploymentRegistry(undefined, { openGateways: true });
let dep: DeploymentResource;
let url: string;
let bucket: { dir: string; url: string };
let H: Record<string, string>;
let w1: TensorMap;
let w2: TensorMap;

// biome-ignore lint/suspicious/noExplicitAny: response JSON read loosely in assertions
type Json = Record<string, any>;

async function post(
  path: string,
  body: unknown,
  extra: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'POST',
    headers: { ...H, ...extra },
    body: JSON.stringify(body),
  });
}

beforeAll(async () => {
  ({
    dep,
    url,
    bucket,
    headers: H,
  } = await startBucketDeployment(registry, {
    deploymentId: 'rl-serving',
    replicas: 2,
  }));
  const base = await baseTensors();
  w1 = perturb(base, 1);
  w2 = perturb(w1, 2, 0.005);
  await writeFull(bucket.dir, 'v1', w1);
  await writeDelta(bucket.dir, 'v2', 'v1', w2, w1);
}, 60_000);

afterAll(async () => {
  await registry.close();
});

const PROMPT = 'The cat sat on the mat. 12+7=19. ';

describe('OpenAI-compatible completions', () => {
  it('text prompt: echo gives training-aligned prompt logprobs that match the engine', async () => {
    const res = await post('/inference/v1/completions', {
      prompt: PROMPT,
      max_tokens: 8,
      logprobs: 2,
      echo: true,
      temperature: 0,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('server-timing')).toMatch(/prefill-queue;dur=/);
    const body = (await res.json()) as Json;
    const toks = Array.from(Buffer.from(PROMPT));
    expect(body.prompt_token_ids).toEqual(toks);
    const c = body.choices[0];
    expect(c.finish_reason).toBe('length');
    expect(c.token_ids).toHaveLength(8);
    expect(c.text.startsWith(PROMPT)).toBe(true);
    expect(c.logprobs.token_logprobs[0]).toBeNull();
    expect(c.logprobs.token_ids).toEqual([...toks, ...c.token_ids]);
    const eng = await engineLogprobs(null, [...toks, ...c.token_ids]);
    const served = c.logprobs.token_logprobs.slice(1) as number[];
    const err = mae(served, eng);
    console.log(JSON.stringify({ gateway_logprob_mae_base: err }));
    expect(err).toBeLessThan(1e-4);
    expect(Object.keys(c.logprobs.top_logprobs[toks.length])).toHaveLength(2);
    expect(body.usage).toMatchObject({
      prompt_tokens: toks.length,
      completion_tokens: 8,
      total_tokens: toks.length + 8,
    });
    expect(body.snapshot_identity).toBeNull();
    expect(body.server_timing.prefill_queue_duration).toBeGreaterThanOrEqual(0);
  });

  it('token-id prompt with n and seed is reproducible; stop strings end with finish_reason stop', async () => {
    const prompt = Array.from(Buffer.from('Q: 2+2=? A:'));
    const a = (await (
      await post('/inference/v1/completions', { prompt, n: 3, max_tokens: 12, seed: 7 })
    ).json()) as Json;
    const b = (await (
      await post('/inference/v1/completions', { prompt, n: 3, max_tokens: 12, seed: 7 })
    ).json()) as Json;
    expect(a.choices).toHaveLength(3);
    expect(a.choices.map((c: Json) => c.token_ids)).toEqual(
      b.choices.map((c: Json) => c.token_ids),
    );
    expect(a.usage.completion_tokens).toBe(
      a.choices.reduce((s: number, c: Json) => s + c.token_ids.length, 0),
    );
    const greedy = (await (
      await post('/inference/v1/completions', {
        prompt: 'The cat sat on the',
        max_tokens: 20,
        temperature: 0,
      })
    ).json()) as Json;
    const text = greedy.choices[0].text as string;
    const stop = text.slice(3, 5);
    const stopped = (await (
      await post('/inference/v1/completions', {
        prompt: 'The cat sat on the',
        max_tokens: 20,
        temperature: 0,
        stop: [stop],
      })
    ).json()) as Json;
    expect(stopped.choices[0].finish_reason).toBe('stop');
    expect(stopped.choices[0].text).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('SSE streaming yields the same text as the plain response, then usage (when asked) and [DONE]', async () => {
    const body = { prompt: 'Hello', max_tokens: 10, seed: 3, temperature: 0.8 };
    const plain = (await (
      await post('/inference/v1/completions', body, { 'x-session-affinity': 's1' })
    ).json()) as Json;
    // without stream_options.include_usage no chunk has an empty choices list
    const bare = (await sse(
      await post('/inference/v1/completions', { ...body, stream: true }),
    )) as (Json | string)[];
    expect(bare.at(-1)).toBe('[DONE]');
    expect((bare.slice(0, -1) as Json[]).every((e) => e.choices.length === 1)).toBe(true);
    const res = await post(
      '/inference/v1/completions',
      { ...body, stream: true, logprobs: 1, stream_options: { include_usage: true } },
      { 'x-session-affinity': 's1' },
    );
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = await sse(res);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1) as Json[];
    const text = chunks.flatMap((e) => e.choices.map((c: Json) => c.text ?? '')).join('');
    expect(text).toBe(plain.choices[0].text);
    expect(chunks.at(-1)?.usage.completion_tokens).toBe(10);
    expect(chunks.at(-1)?.choices).toEqual([]);
    expect(chunks.some((e) => e.choices[0]?.finish_reason === 'length')).toBe(true);
  });

  it('SSE streams hold back a partial stop string and end at it; chat streams deltas', async () => {
    const base = { prompt: 'The cat sat on the', max_tokens: 20, temperature: 0 };
    const full = ((await (await post('/inference/v1/completions', base)).json()) as Json).choices[0]
      .text as string;
    const stop = full.slice(4, 7);
    const plain = (await (
      await post('/inference/v1/completions', { ...base, stop })
    ).json()) as Json;
    const events = (
      await sse(await post('/inference/v1/completions', { ...base, stop, stream: true }))
    ).slice(0, -1) as Json[];
    const text = events.flatMap((e) => e.choices.map((c: Json) => c.text ?? '')).join('');
    expect(text).toBe(plain.choices[0].text);
    expect(text).not.toContain(stop);
    expect(events.some((e) => e.choices[0]?.finish_reason === 'stop')).toBe(true);
    const chat = (await sse(
      await post('/inference/v1/chat/completions', {
        messages: [{ role: 'user', content: 'Hi' }],
        max_tokens: 12,
        temperature: 0,
        stream: true,
      }),
    )) as (Json | string)[];
    expect(chat.at(-1)).toBe('[DONE]');
    const deltas = (chat.slice(0, -1) as Json[])
      .flatMap((e) => e.choices.map((c: Json) => c.delta?.content ?? ''))
      .join('');
    const nonStream = (await (
      await post('/inference/v1/chat/completions', {
        messages: [{ role: 'user', content: 'Hi' }],
        max_tokens: 12,
        temperature: 0,
      })
    ).json()) as Json;
    expect(deltas).toBe(nonStream.choices[0].message.content);
    expect((chat[0] as Json).object).toBe('chat.completion.chunk');
  });

  it('a client that disconnects mid-stream stops the generation on the replica', async () => {
    const status = async () =>
      ((await (await fetch(`${url}/hot_load/v1/models/hot_load`)).json()) as Json)
        .replicas as Json[];
    const before = (await status()).reduce((n: number, r: Json) => n + r.generated_tokens, 0);
    const ctl = new AbortController();
    const res = await fetch(`${url}/inference/v1/completions`, {
      method: 'POST',
      headers: H,
      signal: ctl.signal,
      body: JSON.stringify({ prompt: 'Go', max_tokens: 480, ignore_eos: true, stream: true }),
    });
    const reader = res.body?.getReader();
    await reader?.read();
    ctl.abort();
    const t0 = Date.now();
    while ((await status()).some((r) => r.inflight > 0)) {
      if (Date.now() - t0 > 10_000) throw new Error('generation did not stop');
      await new Promise((r) => setTimeout(r, 10));
    }
    const after = (await status()).reduce((n: number, r: Json) => n + r.generated_tokens, 0);
    expect(after - before).toBeLessThan(480);
  });

  it('chat completions render the conversation and return an assistant message', async () => {
    const res = await post('/inference/v1/chat/completions', {
      messages: [{ role: 'user', content: 'What is 3+4?' }],
      max_tokens: 24,
      temperature: 0,
      logprobs: true,
      top_logprobs: 1,
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Json;
    expect(body.object).toBe('chat.completion');
    const c = body.choices[0];
    expect(c.message.role).toBe('assistant');
    expect(typeof c.message.content).toBe('string');
    expect(['stop', 'length']).toContain(c.finish_reason);
    expect(c.logprobs.content).toHaveLength(c.token_ids.length);
  });

  it('session affinity pins a session to one replica and the prefix cache reuses its prompt', async () => {
    const hdr = { 'x-session-affinity': 'user-42', 'x-multi-turn-session-id': 'user-42' };
    const first = (await (
      await post(
        '/inference/v1/completions',
        { prompt: 'Turn one: the sky is', max_tokens: 6, temperature: 0 },
        hdr,
      )
    ).json()) as Json;
    const second = (await (
      await post(
        '/inference/v1/completions',
        {
          prompt: `Turn one: the sky is${first.choices[0].text} Turn two:`,
          max_tokens: 6,
          temperature: 0,
        },
        hdr,
      )
    ).json()) as Json;
    expect(second.replicas).toEqual(first.replicas);
    expect(second.usage.prompt_tokens_details.cached_tokens).toBeGreaterThan(15);
    const ids = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = (await (
        await post(
          '/inference/v1/completions',
          { prompt: 'x', max_tokens: 1 },
          { 'x-session-affinity': 'user-42' },
        )
      ).json()) as Json;
      ids.add(r.replicas[0]);
    }
    expect(ids.size).toBe(1);
  });

  it('rejects bad requests with a clear message', async () => {
    const res = await post('/inference/v1/completions', { prompt: 'x', max_tokens: 0 });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).error.message).toMatch(/max_tokens/);
    const wrong = await fetch(`${url}/inference/v1/completions`, {
      method: 'POST',
      headers: { ...H, 'fireworks-deployment': 'accounts/test/deployments/other' },
      body: '{"prompt":"x"}',
    });
    expect(wrong.status).toBe(404);
  });
});

describe('hot-load API', () => {
  it('full snapshot, then an arc_v2 delta while a stream is in flight (ASYNC): the stream continues on the new weights', async () => {
    let res = await post('/hot_load/v1/models/hot_load', { identity: 'v1' });
    expect(res.status).toBe(200);
    await waitLoaded(url, 'v1');
    const toks = Array.from(Buffer.from(PROMPT));
    const b1 = (await (
      await post('/inference/v1/completions', {
        prompt: toks,
        max_tokens: 4,
        logprobs: 0,
        echo: true,
        temperature: 0,
      })
    ).json()) as Json;
    expect(b1.snapshot_identity).toBe('v1');
    const e1 = await engineLogprobs(w1, [...toks, ...b1.choices[0].token_ids]);
    const m1 = mae(b1.choices[0].logprobs.token_logprobs.slice(1), e1);
    expect(m1).toBeLessThan(1e-4);

    // a long stream, then the delta signal mid-stream
    const streamP = post(
      '/inference/v1/completions',
      { prompt: 'Once', max_tokens: 300, temperature: 1, seed: 1, stream: true, ignore_eos: true },
      { 'x-session-affinity': 'long' },
    );
    await new Promise((r) => setTimeout(r, 100));
    res = await post('/hot_load/v1/models/hot_load', {
      identity: 'v2',
      incremental_snapshot_metadata: {
        previous_snapshot_identity: 'v1',
        compression_format: 'arc_v2',
        checksum_format: 'alder32',
      },
    });
    expect(res.status).toBe(200);
    const events = (await sse(await streamP)).slice(0, -1) as Json[];
    const tokenEvents = events.filter((e) => e.choices[0]?.token_ids?.length);
    expect(tokenEvents).toHaveLength(300); // nothing lost or duplicated
    const ids = tokenEvents.map((e) => e.snapshot_identity as string);
    expect(ids[0]).toBe('v1');
    expect(ids.at(-1)).toBe('v2');
    expect(ids.indexOf('v2')).toBeGreaterThan(0);
    expect(ids.slice(ids.indexOf('v2')).every((i) => i === 'v2')).toBe(true);
    await waitLoaded(url, 'v2');

    const b2 = (await (
      await post('/inference/v1/completions', {
        prompt: toks,
        max_tokens: 4,
        logprobs: 0,
        echo: true,
        temperature: 0,
      })
    ).json()) as Json;
    expect(b2.snapshot_identity).toBe('v2');
    const e2 = await engineLogprobs(w2, [...toks, ...b2.choices[0].token_ids]);
    const m2 = mae(b2.choices[0].logprobs.token_logprobs.slice(1), e2);
    expect(m2).toBeLessThan(1e-4);

    const ledger = (await (
      await fetch(`${url}/v1/${dep.name}/ledger`, { headers: H })
    ).json()) as Json;
    const [row2, row1] = ledger.snapshots as [Json, Json];
    expect(row2).toMatchObject({
      identity: 'v2',
      snapshot_type: 'delta',
      previous_snapshot_identity: 'v1',
      load_error: null,
    });
    expect(row1).toMatchObject({ identity: 'v1', snapshot_type: 'full' });
    expect(row2.replicas).toHaveLength(2);
    for (const r of row2.replicas)
      expect(r.readiness_transitions.map((t: Json) => t.readiness)).toEqual([false, true]);
    const total = (row: Json) =>
      Math.max(
        ...row.replicas.map((r: Json) => r.timing_ms.fetch + r.timing_ms.build + r.timing_ms.swap),
      );
    console.log(
      JSON.stringify({
        gateway_logprob_mae_v1: m1,
        gateway_logprob_mae_v2: m2,
        hotload_full_ms: total(row1),
        hotload_delta_ms: total(row2),
        swap_ms: row2.replicas[0].timing_ms.swap,
      }),
    );
  });

  it('refuses a delta against an unknown snapshot, a slash in the identity, and config mismatches; v2 keeps serving', async () => {
    const inc = (prev: string) => ({
      previous_snapshot_identity: prev,
      compression_format: 'arc_v2',
      checksum_format: 'alder32',
    });
    let res = await post('/hot_load/v1/models/hot_load', {
      identity: 'v9',
      incremental_snapshot_metadata: inc('nope'),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).error.message).toMatch(/'nope' is not in the ledger/);
    res = await post('/hot_load/v1/models/hot_load', { identity: 'a/b' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).error.message).toMatch(/single path segment/);

    const cfg = await baseConfig();
    await writeFull(bucket.dir, 'bad-rope', w2, { ...cfg, rope_theta: 5000 });
    res = await post('/hot_load/v1/models/hot_load', { identity: 'bad-rope' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).error.message).toMatch(
      /^Config value mismatch for rope_theta/,
    );
    const { tie_word_embeddings: _t, ...fewer } = cfg;
    await writeFull(bucket.dir, 'fewer', w2, fewer);
    res = await post('/hot_load/v1/models/hot_load', { identity: 'fewer' });
    expect(((await res.json()) as Json).error.message).toMatch(
      /^Extra base model config options: tie_word_embeddings/,
    );
    await writeFull(bucket.dir, 'qwen2', w2, { ...cfg, model_type: 'qwen2' });
    res = await post('/hot_load/v1/models/hot_load', { identity: 'qwen2' });
    expect(((await res.json()) as Json).error.message).toMatch(/^Types mismatch/);
    await writeFull(bucket.dir, 'extra', w2, { ...cfg, snapshot_only_option: 1 });
    res = await post('/hot_load/v1/models/hot_load', { identity: 'extra' });
    expect(((await res.json()) as Json).error.message).toMatch(
      /^Extra snapshot model config options: snapshot_only_option/,
    );

    // corrupted delta: the replicas refuse it (checksum) and keep serving v2
    await writeDelta(bucket.dir, 'v3', 'v2', perturb(w2, 3), w2);
    const f = join(bucket.dir, 'v3', 'model-00000.safetensors');
    const bytes = await readFile(f);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] as number) ^ 0xff;
    await writeFile(f, bytes);
    res = await post('/hot_load/v1/models/hot_load', {
      identity: 'v3',
      incremental_snapshot_metadata: inc('v2'),
    });
    expect(res.status).toBe(200);
    await waitSettled(url);
    const st = (await (await fetch(`${url}/hot_load/v1/models/hot_load`)).json()) as Json;
    for (const r of st.replicas) {
      expect(r.current_snapshot_identity).toBe('v2');
      expect(r.loading_state.error).toMatch(/is corrupt: .*(checksum|zstd)/);
    }
    const ok = (await (
      await post('/inference/v1/completions', { prompt: 'x', max_tokens: 2 })
    ).json()) as Json;
    expect(ok.snapshot_identity).toBe('v2');
    const ledger = (await (
      await fetch(`${url}/v1/${dep.name}/ledger`, { headers: H })
    ).json()) as Json;
    expect(ledger.snapshots[0]).toMatchObject({ identity: 'v3', snapshot_type: 'delta' });
    expect(ledger.snapshots[0].load_error).toMatch(/is corrupt: .*(checksum|zstd)/);

    // extra_fields_ignore lets the additive key through
    res = await post('/hot_load/v1/models/hot_load', {
      identity: 'extra',
      validation: { extra_fields_ignore: ['snapshot_only_option'] },
      reset_prompt_cache: 'none',
    });
    expect(res.status).toBe(200);
    await waitLoaded(url, 'extra');
  });

  it('ledger reset: the next delta is refused, a full snapshot loads', async () => {
    const del = await fetch(`${url}/v1/${dep.name}/ledger`, { method: 'DELETE', headers: H });
    expect(del.status).toBe(200);
    const ledger = (await (
      await fetch(`${url}/v1/${dep.name}/ledger`, { headers: H })
    ).json()) as Json;
    expect(ledger.snapshots).toEqual([]);
    let res = await post('/hot_load/v1/models/hot_load', {
      identity: 'v2b',
      incremental_snapshot_metadata: {
        previous_snapshot_identity: 'extra',
        compression_format: 'arc_v2',
        checksum_format: 'alder32',
      },
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).error.message).toMatch(/signal a full snapshot/);
    res = await post('/hot_load/v1/models/hot_load', { identity: 'v1' });
    expect(res.status).toBe(200);
    await waitLoaded(url, 'v1');
  });
});

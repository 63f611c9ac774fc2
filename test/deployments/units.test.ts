// In-process pieces of deployments: config validation, identities, sampling, and the
// gateway's refusals, a replica runtime's HTTP face in process (no replica processes needed).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway } from '../../src/deployments/gateway/server.js';
import { ReplicaRuntime } from '../../src/deployments/replica/runtime.js';
import { createRng, sampleToken, topLogprobs } from '../../src/deployments/replica/sampling.js';
import { serverPort, startReplicaServer } from '../../src/deployments/replica/server.js';
import {
  checkIdentity,
  HotLoadError,
  validateSnapshotConfig,
} from '../../src/deployments/replica/snapshots.js';
import { parseHfConfig } from '../../src/engine/config.js';
import { baseConfig, baseDir, makeBucket } from './fixtures.js';

describe('snapshot config validation', () => {
  it('reports the documented messages and honours extra_fields_ignore', async () => {
    const base = await baseConfig();
    expect(validateSnapshotConfig(base, { ...base })).toBeNull();
    expect(validateSnapshotConfig(base, { ...base, torch_dtype: 'bfloat16' })).toBeNull();
    expect(validateSnapshotConfig(base, { ...base, hidden_size: 512 })).toMatch(
      /^Config value mismatch for hidden_size/,
    );
    expect(validateSnapshotConfig(base, { ...base, extra_meta: 'x' })).toMatch(
      /^Extra snapshot model config options: extra_meta$/,
    );
    expect(validateSnapshotConfig(base, { ...base, extra_meta: 'x' }, ['extra_meta'])).toBeNull();
    const { rope_theta: _r, ...noRope } = base;
    expect(validateSnapshotConfig(base, noRope)).toMatch(
      /^Extra base model config options: rope_theta$/,
    );
    expect(validateSnapshotConfig(base, noRope, ['rope_theta'])).toBeNull();
    expect(validateSnapshotConfig(base, { ...base, architectures: ['LlamaForCausalLM'] })).toMatch(
      /^Types mismatch/,
    );
  });

  it('identities are one path segment', () => {
    expect(checkIdentity('step_00100')).toBe('step_00100');
    for (const bad of ['a/b', '', '..', 'a\\b'])
      expect(() => checkIdentity(bad)).toThrow(HotLoadError);
  });
});

describe('sampling', () => {
  const row = Float32Array.from([Math.log(0.6), Math.log(0.3), Math.log(0.1)]);
  it('greedy, top-k 1 and a tiny top-p pick the argmax; a seed reproduces draws', () => {
    const rng = createRng(1);
    expect(sampleToken(row, { temperature: 0, topK: 0, topP: 1 }, rng)).toBe(0);
    for (let i = 0; i < 20; i++) {
      expect(sampleToken(row, { temperature: 1, topK: 1, topP: 1 }, rng)).toBe(0);
      expect(sampleToken(row, { temperature: 1, topK: 0, topP: 0.5 }, rng)).toBe(0);
    }
    const draw = (seed: number) => {
      const r = createRng(seed);
      return Array.from({ length: 50 }, () =>
        sampleToken(row, { temperature: 1, topK: 0, topP: 1 }, r),
      );
    };
    expect(draw(9)).toEqual(draw(9));
    expect(draw(9)).not.toEqual(draw(10));
  });

  it('draws follow the distribution; top-p 0.9 drops the tail; top logprobs are sorted', () => {
    const rng = createRng(123);
    const counts = [0, 0, 0];
    const N = 6000;
    for (let i = 0; i < N; i++)
      (counts[sampleToken(row, { temperature: 1, topK: 0, topP: 1 }, rng)] as number)++;
    expect((counts[0] as number) / N).toBeCloseTo(0.6, 1);
    expect((counts[2] as number) / N).toBeCloseTo(0.1, 1);
    for (let i = 0; i < 200; i++)
      expect(sampleToken(row, { temperature: 1, topK: 0, topP: 0.85 }, rng)).not.toBe(2);
    expect(topLogprobs(row, 2).map((t) => t.token)).toEqual([0, 1]);
  });
});

describe('sampling order', () => {
  /** The comparator-sort sampler sampleToken replaced (same picks for the same seed). */
  function reference(
    row: Float32Array,
    p: { temperature: number; topK: number; topP: number },
    rng: () => number,
  ): number {
    const V = row.length;
    let ids = Array.from({ length: V }, (_, i) => i);
    ids.sort((a, b) => (row[b] as number) - (row[a] as number) || a - b);
    if (p.topK > 0 && p.topK < V) ids = ids.slice(0, p.topK);
    const max = row[ids[0] as number] as number;
    let weights = ids.map((i) => Math.exp(((row[i] as number) - max) / p.temperature));
    let total = weights.reduce((a, b) => a + b, 0);
    if (p.topP < 1) {
      let acc = 0;
      let keep = 0;
      while (keep < ids.length) {
        acc += (weights[keep] as number) / total;
        keep++;
        if (acc >= p.topP) break;
      }
      ids = ids.slice(0, keep);
      weights = weights.slice(0, keep);
      total = weights.reduce((a, b) => a + b, 0);
    }
    let u = rng() * total;
    for (let i = 0; i < ids.length; i++) {
      u -= weights[i] as number;
      if (u < 0) return ids[i] as number;
    }
    return ids[ids.length - 1] as number;
  }

  it('picks what a comparator sort by (log-prob desc, id asc) picks: ties, -0, subarray rows', () => {
    const V = 272;
    const gen = createRng(5);
    const params = [
      { temperature: 1, topK: 0, topP: 1 },
      { temperature: 0.7, topK: 40, topP: 0.9 },
      { temperature: 1.3, topK: 0, topP: 0.5 },
      { temperature: 1, topK: 1000, topP: 1 },
    ];
    for (let t = 0; t < 300; t++) {
      const row = new Float32Array(V + 3).subarray(3);
      // every third row is full of ties
      for (let i = 0; i < V; i++) row[i] = t % 3 === 0 ? -Math.round(gen() * 4) : -gen() * 12;
      row[t % V] = 0;
      row[(t * 7 + 1) % V] = -0;
      for (const p of params) {
        const a = createRng(t);
        const b = createRng(t);
        for (let k = 0; k < 4; k++) expect(sampleToken(row, p, a)).toBe(reference(row, p, b));
      }
    }
  });
});

describe('replica /generate', () => {
  async function startRuntime() {
    const cfg = await baseConfig();
    const files = new Map<string, Buffer>();
    for (const f of ['config.json', 'model.safetensors'])
      files.set(f, await readFile(join(baseDir, f)));
    const rt = await ReplicaRuntime.start({
      replicaId: 'r0',
      config: parseHfConfig(cfg),
      baseConfig: cfg,
      baseWeights: { identity: '', files },
      openSnapshot: () => {
        throw new Error('no snapshots here');
      },
      transition: 'ASYNC',
    });
    return startReplicaServer(rt);
  }

  /** A /generate call's events, less their timings (which differ from run to run). */
  async function generate(server: Awaited<ReturnType<typeof startRuntime>>, body: object) {
    const res = await fetch(`http://127.0.0.1:${serverPort(server)}/generate`, {
      method: 'POST',
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    const lines = (await res.text()).split('\n').filter((l) => l);
    return lines.map((l) => {
      const { prefillQueueMs: _q, prefillMs: _p, decodeMs: _d, ...e } = JSON.parse(l);
      return e;
    });
  }

  it('stream: false sends the same events as stream: true (token events held back)', async () => {
    const server = await startRuntime();
    try {
      const events = (stream: boolean | undefined) =>
        generate(server, {
          prompt: Array.from(Buffer.from('Stream or not:')),
          max_tokens: 9,
          seed: 4,
          top_logprobs: 2,
          echo: true, // no prefix-cache reuse: every request computes the same
          stream,
        });
      const streamed = await events(undefined);
      expect(streamed).toHaveLength(11);
      expect(await events(false)).toEqual(streamed);
      expect(await events(true)).toEqual(streamed);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('a seeded request gives the same bits whether or not the prefix cache holds its prompt', async () => {
    const server = await startRuntime();
    try {
      const prompt = Array.from(Buffer.from('User: what is the capital of Peru?\nAssistant:'));
      const seeded = { prompt, max_tokens: 12, seed: 7, top_logprobs: 3, stream: false };
      const cold = await generate(server, seeded);
      // A sibling of the same prompt has finished: the second run reuses its prompt's KV, but
      // computes the last two prompt tokens together, as the cold prefill did.
      const warm = await generate(server, seeded);
      expect(cold[0].cachedTokens).toBe(0);
      expect(warm[0].cachedTokens).toBe(prompt.length - 2);
      const { cachedTokens: _c, ...coldPrompt } = cold[0];
      const { cachedTokens: _w, ...warmPrompt } = warm[0];
      expect(warmPrompt).toEqual(coldPrompt);
      expect(warm.slice(1)).toEqual(cold.slice(1));
      // A seeded continuation never reuses decoded tokens (their KV came one row at a time);
      // an unseeded one does.
      const answered = [...prompt, ...cold.filter((e) => e.type === 'token').map((e) => e.token)];
      const more = [...answered, ...Buffer.from(' More?')];
      const again = await generate(server, { ...seeded, prompt: more, max_tokens: 2 });
      expect(again[0].cachedTokens).toBe(prompt.length);
      const loose = await generate(server, { prompt: more, max_tokens: 2, stream: false });
      expect(loose[0].cachedTokens).toBeGreaterThan(prompt.length);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('gateway refusals without replicas', () => {
  let gw: Gateway;
  let url: string;
  const dep = 'accounts/u/deployments/empty';
  beforeAll(async () => {
    const bucket = await makeBucket();
    gw = await Gateway.create({
      account: 'u',
      deploymentId: 'empty',
      model: 'accounts/temper/models/byte-lm-3m',
      baseModelDir: baseDir,
      bucketUrl: bucket.url,
      transition: 'ASYNC',
      replicas: [],
      apiKey: 'k',
    });
    url = await gw.listen();
  });
  afterAll(async () => {
    await gw.close();
  });
  const call = (
    path: string,
    body?: unknown,
    auth = 'Bearer k',
    method = body === undefined ? 'GET' : 'POST',
  ) =>
    fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: auth,
        'fireworks-deployment': dep,
        'content-type': 'application/json',
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  const message = async (r: Response) =>
    ((await r.json()) as { error: { message: string } }).error.message;

  it('authenticates, routes, validates and says what to do', async () => {
    expect((await call('/inference/v1/completions', { prompt: 'x' }, 'Bearer wrong')).status).toBe(
      401,
    );
    const none = await call('/inference/v1/completions', { prompt: 'x' });
    expect(none.status).toBe(503);
    expect(await message(none)).toMatch(/no replicas/);
    expect((await call('/inference/v1/embeddings', { input: 'x' })).status).toBe(404);
    const bad = await call('/hot_load/v1/models/hot_load', {
      identity: 'v1',
      reset_prompt_cache: 'sometimes',
    });
    expect(bad.status).toBe(400);
    expect(await message(bad)).toMatch(/reset_prompt_cache/);
    const fmt = await call('/hot_load/v1/models/hot_load', {
      identity: 'v1',
      incremental_snapshot_metadata: {
        previous_snapshot_identity: 'v0',
        compression_format: 'zip',
        checksum_format: 'alder32',
      },
    });
    expect(await message(fmt)).toMatch(/compression_format/);
    const missing = await call('/hot_load/v1/models/hot_load', { identity: 'not-uploaded' });
    expect(missing.status).toBe(404);
    expect(await message(missing)).toMatch(/upload the snapshot before signalling it/);
    const hint = await call('/hot_load/v1/models/hot_load/hint', {
      snapshot: { identity: 'x/y' },
      filename: 'model-00000.safetensors',
    });
    expect(hint.status).toBe(400);
    const ledger = (await (await call(`/v1/${dep}/ledger`)).json()) as {
      snapshots: { identity: string; load_error: string }[];
    };
    expect(ledger.snapshots[0]).toMatchObject({
      identity: 'not-uploaded',
      load_error: 'config.json not found',
    });
    expect((await call(`/v1/${dep}/ledger`, undefined, 'Bearer k', 'DELETE')).status).toBe(200);
    expect(
      ((await (await call(`/v1/${dep}/ledger`)).json()) as { snapshots: unknown[] }).snapshots,
    ).toEqual([]);
  });
});

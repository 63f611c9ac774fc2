// The deployment gateway as a drop-in for OpenAI clients: the unmodified `openai` package
// (pinned venv, scripts/python-envs/openai.txt) against a real deployment (gateway + a replica
// process serving the bundled model), every response validated strictly against the client's
// own pydantic models (openai_conformance.py); then a soak of requests that stop early.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeploymentRegistry, type DeploymentResource } from '../../src/deployments/index.js';
import { pythonEnv } from '../support/python-env.js';
import { baseDir, baseTensors, makeBucket, perturb, waitLoaded, writeFull } from './fixtures.js';

const MODEL = 'accounts/temper/models/byte-lm-3m';
const ADDON = 'accounts/test/models/conformance-lora';
const CASES = [
  'models_list',
  'models_retrieve',
  'completion_basic',
  'completion_logprobs',
  'completion_echo_scoring',
  'completion_n2_usage',
  'completion_batch_prompts',
  'completion_stop',
  'completion_stream',
  'chat_basic',
  'chat_logprobs',
  'chat_n_stop',
  'chat_stream',
  'chat_tools',
  'errors',
  'fireworks_token_in_stream',
  'disconnect_frees_replica',
] as const;

const registry = new DeploymentRegistry(undefined, { openGateways: true });
let dep: DeploymentResource;
let url: string;
let report: Record<string, { ok: boolean; error?: string; detail?: unknown }>;

beforeAll(async () => {
  const bucket = await makeBucket();
  // a snapshot the soak hot-loads while its requests run
  await writeFull(bucket.dir, 'v1', perturb(await baseTensors(), 1));
  dep = await registry.create({
    account: 'test',
    deploymentId: 'conformance',
    baseModel: MODEL,
    baseModelDir: baseDir,
    hotLoad: { bucketUrl: bucket.url },
    minReplicaCount: 1,
    maxReplicaCount: 1,
    // a decode step of at least 1 ms, so a long generation is still running when a client leaves
    replica: { stepDelayMs: 1 },
  });
  expect(dep.state).toBe('READY');
  url = dep.gatewayUrl as string;
  // the LoRA models a deployment serves on its base are listed after it
  registry.gateway(dep.name).setAddons([ADDON]);
  const py = pythonEnv('openai').python;
  const script = join(import.meta.dirname, 'openai_conformance.py');
  const { stdout } = await promisify(execFile)(py, [script, url, MODEL, ADDON], {
    timeout: 240_000,
    maxBuffer: 16 << 20,
  });
  report = JSON.parse(stdout.trim().split('\n').at(-1) as string);
}, 300_000);

afterAll(async () => {
  await registry.close();
});

describe('the openai package against a deployment', () => {
  it.each(CASES)('%s', (name) => {
    const r = report[name];
    expect(r, `case ${name} did not run`).toBeDefined();
    expect(r?.ok, r?.error).toBe(true);
    if (name === 'completion_echo_scoring' || name === 'disconnect_frees_replica')
      console.log(JSON.stringify({ [name]: r?.detail }));
  });

  it('runs no case the list above does not name', () => {
    expect(Object.keys(report).sort()).toEqual([...CASES].sort());
  });
});

describe('no request hangs', () => {
  it('500 requests that end at stop strings (n 1 and 2, plain and streamed, through a hot-load swap) all answer', async () => {
    const stops = [['.'], ['e'], [' t', 'o']];
    let hung = 0;
    let answered = 0;
    let stoppedByString = 0;
    let onV1 = 0;
    const failures: string[] = [];
    const t0 = performance.now();
    const one = async (i: number) => {
      const stream = i % 4 >= 2;
      try {
        const res = await fetch(`${url}/inference/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          // each request is bounded: a hang shows as a timeout, not as a stuck test
          signal: AbortSignal.timeout(15_000),
          body: JSON.stringify({
            prompt: 'The cat sat on the',
            max_tokens: 16,
            temperature: 1,
            seed: i,
            n: 1 + (i % 2),
            stop: stops[i % 3],
            stream,
          }),
        });
        const text = await res.text();
        if (res.status !== 200) failures.push(`${i}: ${res.status} ${text}`);
        else if (stream ? !text.endsWith('data: [DONE]\n\n') : !text.includes('"finish_reason"'))
          failures.push(`${i}: incomplete ${text.slice(-200)}`);
        else answered++;
        if (text.includes('"finish_reason":"stop"')) stoppedByString++;
        if (text.includes('"snapshot_identity":"v1"')) onV1++;
      } catch (err) {
        if ((err as Error).name === 'TimeoutError') hung++;
        else failures.push(`${i}: ${(err as Error).message}`);
      }
    };
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < 500) {
          // the weights swap (ASYNC) under the requests in flight
          if (next === 150)
            void fetch(`${url}/hot_load/v1/models/hot_load`, {
              method: 'POST',
              body: JSON.stringify({ identity: 'v1' }),
            });
          await one(next++);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      JSON.stringify({ soak_requests: 500, hung, answered, stoppedByString, onV1, seconds }),
    );
    expect(failures).toEqual([]);
    expect(hung).toBe(0);
    expect(answered).toBe(500);
    expect(stoppedByString).toBeGreaterThan(350);
    await waitLoaded(url, 'v1');
    expect(onV1).toBeGreaterThan(0);
    const status = (await (await fetch(`${url}/hot_load/v1/models/hot_load`)).json()) as {
      replicas: { inflight: number }[];
    };
    // the early stops released the replica too
    const t1 = Date.now();
    let replicas = status.replicas;
    while (replicas.some((r) => r.inflight > 0) && Date.now() - t1 < 5000) {
      await new Promise((r) => setTimeout(r, 20));
      replicas = (
        (await (await fetch(`${url}/hot_load/v1/models/hot_load`)).json()) as typeof status
      ).replicas;
    }
    expect(replicas.map((r) => r.inflight)).toEqual([0]);
  }, 120_000);
});

describe('a replica that dies mid-answer', () => {
  it('ends the stream with an OpenAI error event and a plain request with a 502; the deployment recovers', async () => {
    const [replica] = registry.replicas(dep.name);
    const body = { prompt: 'Go', max_tokens: 400, ignore_eos: true };
    const streamed = fetch(`${url}/inference/v1/completions`, {
      method: 'POST',
      signal: AbortSignal.timeout(15_000),
      body: JSON.stringify({ ...body, stream: true }),
    });
    const plain = fetch(`${url}/inference/v1/completions`, {
      method: 'POST',
      signal: AbortSignal.timeout(15_000),
      body: JSON.stringify(body),
    });
    const res = await streamed;
    const reader = res.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    let text = new TextDecoder().decode((await reader.read()).value);
    process.kill(replica?.pid as number, 'SIGKILL');
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const last = JSON.parse(text.trim().split('\n\n').at(-1)?.slice(6) as string);
    expect(Object.keys(last.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(last.error).toMatchObject({ type: 'server_error', code: 'replica_error' });
    const p = await plain;
    expect(p.status).toBe(502);
    expect(((await p.json()) as { error: { message: string } }).error.message).toMatch(
      /replica (stream failed|unreachable)/,
    );
    // the registry replaces the replica; the next request is answered by the new one
    const t0 = Date.now();
    while (
      registry.get(dep.name).replicaCount < 1 ||
      registry.replicas(dep.name)[0]?.pid === replica?.pid
    ) {
      expect(Date.now() - t0).toBeLessThan(60_000);
      await new Promise((r) => setTimeout(r, 50));
    }
    const ok = await fetch(`${url}/inference/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ prompt: 'Hi', max_tokens: 2 }),
    });
    expect(ok.status).toBe(200);
  }, 90_000);
});

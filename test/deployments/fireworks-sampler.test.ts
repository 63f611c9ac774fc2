// The Fireworks SDK's DeploymentSampler (fireworks-ai[training] 1.2.30, unmodified, the pinned
// venv scripts/python-envs/fireworks-sdk.txt) sampling from a real deployment's gateway:
// token-in streaming completions, raw_output ids, per-token logprobs (equal to the engine's),
// sampling logprobs, top-k ids, and the perf metrics its adaptive concurrency controller reads.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeploymentRegistry, type DeploymentResource } from '../../src/deployments/index.js';
import { pythonEnv } from '../support/python-env.js';
import { baseDir, engineLogprobs, mae, makeBucket } from './fixtures.js';

const registry = new DeploymentRegistry(undefined, { openGateways: true });
let dep: DeploymentResource;
// biome-ignore lint/suspicious/noExplicitAny: the script's JSON, read loosely in assertions
let out: Record<string, any>;
const PROMPT = Array.from(Buffer.from('The cat sat on the mat. '));

beforeAll(async () => {
  const bucket = await makeBucket();
  dep = await registry.create({
    account: 'test',
    deploymentId: 'fw-sampler',
    baseModel: 'accounts/temper/models/byte-lm-3m',
    baseModelDir: baseDir,
    hotLoad: { bucketUrl: bucket.url },
  });
  expect(dep.state).toBe('READY');
  // async: the gateway answers from this same process while the script runs
  const { stdout } = await promisify(execFile)(
    pythonEnv('fireworks-sdk').python,
    [join(import.meta.dirname, 'fireworks_sampler.py'), dep.gatewayUrl as string, dep.name],
    { timeout: 120_000, maxBuffer: 16 << 20 },
  );
  out = JSON.parse(stdout.trim().split('\n').at(-1) as string);
}, 180_000);

afterAll(async () => {
  await registry.close();
});

describe('DeploymentSampler against the gateway', () => {
  it('samples n token-in completions with raw ids, logprobs equal to the engine, top-k ids', async () => {
    expect(out.plain).toHaveLength(3);
    for (const c of out.plain) {
      expect(['stop', 'length']).toContain(c.finish_reason);
      expect(c.prompt_len).toBe(PROMPT.length);
      expect(c.full_tokens.slice(0, PROMPT.length)).toEqual(PROMPT);
      expect(c.full_tokens).toHaveLength(PROMPT.length + c.completion_len);
      expect(c.inference_logprobs).toHaveLength(c.completion_len);
      expect(c.sampling_logprobs).toHaveLength(c.completion_len);
      expect(c.topk_ids).toHaveLength(c.completion_len);
      for (const ids of c.topk_ids) expect(ids).toHaveLength(2);
      // temperature 1 without truncation: the behaviour policy is the model itself
      expect(mae(c.sampling_logprobs, c.inference_logprobs)).toBeLessThan(1e-5);
    }
    const c = out.plain[0];
    const eng = await engineLogprobs(null, c.full_tokens);
    const served = eng.slice(PROMPT.length - 1);
    expect(mae(c.inference_logprobs, served)).toBeLessThan(1e-4);
  });

  it('greedy sampling has sampling logprob 0 (probability 1) and the model logprob apart', () => {
    expect(out.greedy.sampling_logprobs.every((x: number) => x === 0)).toBe(true);
    expect(out.greedy.inference_logprobs.some((x: number) => x < 0)).toBe(true);
  });

  it('echo: training-aligned logprobs of prompt and answer (P+C-1), equal to the engine', async () => {
    const e = out.echo;
    expect(e.logprobs_echoed).toBe(true);
    expect(e.echoed_prompt_logprob_count).toBe(PROMPT.length - 1);
    expect(e.full_tokens.slice(0, PROMPT.length)).toEqual(PROMPT);
    expect(e.inference_logprobs).toHaveLength(PROMPT.length + e.completion_len - 1);
    const eng = await engineLogprobs(null, e.full_tokens);
    expect(mae(e.inference_logprobs, eng)).toBeLessThan(1e-4);
    // the prompt was not sampled; the answer was, at temperature 1
    expect(e.sampling_logprobs.slice(0, PROMPT.length - 1).every((x: null) => x === null)).toBe(
      true,
    );
    expect(
      e.sampling_logprobs
        .slice(PROMPT.length - 1)
        .every((x: number | null) => x !== null && x <= 0),
    ).toBe(true);
  });

  it('feeds its adaptive concurrency controller the prefill queue duration', () => {
    expect(out.metrics.length).toBe(5);
    for (const m of out.metrics) {
      expect(m.prefill_queue_duration).toBeGreaterThanOrEqual(0);
      expect(m.server_ttft).toBeGreaterThan(0);
      expect(m.prompt_tokens).toBe(PROMPT.length);
      expect(m.num_concurrent_requests).toBeGreaterThanOrEqual(1);
    }
    expect(out.controller.avg_pq).toBeGreaterThanOrEqual(0);
    expect(out.controller.requests).toBe(5);
  });
});

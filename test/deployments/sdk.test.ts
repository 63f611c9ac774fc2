// SDK deployment sampling: concurrency controllers (synthetic queue times) and
// DeploymentSampler.sampleWithTokens / HotLoadClient against a real deployment.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeploymentRegistry } from '../../src/deployments/index.js';
import {
  AdaptiveConcurrencyController,
  FixedConcurrencyController,
} from '../../src/sdk/concurrency.js';
import {
  DeploymentSampler,
  DeploymentSamplerError,
  HotLoadClient,
} from '../../src/sdk/deployment-sampler.js';
import { createByteTokenizer, getRenderer } from '../../src/tokenizers/index.js';
import {
  baseDir,
  baseTensors,
  engineLogprobs,
  mae,
  makeBucket,
  perturb,
  writeFull,
} from './fixtures.js';

describe('concurrency controllers', () => {
  it('AIMD: grows proportionally under the prefill-queue target, halves above it, within bounds', () => {
    const c = new AdaptiveConcurrencyController({
      initialWindow: 16,
      minWindow: 2,
      maxWindow: 40,
      prefillQueueTarget: 0.5,
    });
    const feed = (pq: number, k = 4) => {
      for (let i = 0; i < k; i++)
        c.record({ prefillQueueDuration: pq, promptTokens: 100, cachedTokens: 25 });
    };
    feed(0);
    let s = c.stepCompleted();
    expect(s).toMatchObject({
      window: 32,
      prev_window: 16,
      avg_pq: 0,
      cache_hit_rate: 0.25,
      requests: 4,
    });
    feed(0.25);
    expect(c.stepCompleted().window).toBe(40); // 32 + 16, capped at maxWindow
    feed(2);
    expect(c.stepCompleted().window).toBe(20);
    feed(1);
    feed(3);
    s = c.stepCompleted();
    expect(s.avg_pq).toBe(2);
    expect(s.window).toBe(10);
    for (let i = 0; i < 5; i++) {
      feed(5);
      c.stepCompleted();
    }
    expect(c.window).toBe(2); // never below minWindow
    s = c.stepCompleted(); // no requests: unchanged
    expect(s).toMatchObject({ window: 2, avg_pq: null, cache_hit_rate: null, requests: 0 });
    feed(0.45, 1);
    expect(c.stepCompleted().window).toBe(3); // grows by at least one
    expect(() => new AdaptiveConcurrencyController({ initialWindow: 0 })).toThrow(RangeError);
  });

  it('fixed controller is a semaphore', async () => {
    const c = new FixedConcurrencyController(2);
    let peak = 0;
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        await c.acquire();
        peak = Math.max(peak, c.inFlight);
        await new Promise((r) => setTimeout(r, 5));
        c.release();
      }),
    );
    expect(peak).toBe(2);
    expect(c.inFlight).toBe(0);
  });
});

describe('DeploymentSampler on a real deployment', () => {
  const registry = new DeploymentRegistry(undefined, { openGateways: true });
  let url: string;
  let name: string;
  let bucket: { dir: string; url: string };
  beforeAll(async () => {
    bucket = await makeBucket();
    const d = await registry.create({
      account: 'sdk',
      deploymentId: 'sampler',
      baseModel: 'accounts/temper/models/byte-lm-3m',
      baseModelDir: baseDir,
      hotLoad: { bucketUrl: bucket.url },
      replica: { maxDecodeBatch: 8 },
    });
    url = d.gatewayUrl as string;
    name = d.name;
  }, 60_000);
  afterAll(async () => {
    await registry.close();
  });

  it('n fan-out with logprobs (echoed: training-aligned), maxSeqLen filters, hot-load and wait', async () => {
    const ctl = new AdaptiveConcurrencyController({ initialWindow: 2 });
    const sampler = new DeploymentSampler({
      inferenceUrl: url,
      deployment: name,
      renderer: getRenderer('simple', createByteTokenizer()),
      concurrencyController: ctl,
    });
    const out = await sampler.sampleWithTokens({
      messages: [{ role: 'user', content: 'Hi!' }],
      n: 4,
      maxTokens: 8,
      logprobs: true,
      seed: 5,
    });
    expect(out).toHaveLength(4);
    for (const c of out) {
      expect(c.fullTokens).toHaveLength(c.promptLen + c.completionLen);
      expect(c.inferenceLogprobs).toHaveLength(c.completionLen);
      expect(c.logprobsEchoed).toBe(false);
    }
    expect(ctl.stepCompleted().requests).toBe(4);
    // the two concurrent rollouts (window 2) decoded together in batched session calls
    const st = (await (await fetch(`${url}/hot_load/v1/models/hot_load`)).json()) as {
      replicas: { decode_batches: { batches: number; steps: number } }[];
    };
    expect(st.replicas[0]?.decode_batches.batches).toBeGreaterThan(0);

    const w = perturb(await baseTensors(), 31);
    await writeFull(bucket.dir, 'policy-1', w);
    const hl = new HotLoadClient({ inferenceUrl: url, deployment: name });
    await hl.hotloadAndWait('policy-1');
    const prompt = Array.from(Buffer.from('Rollout: 5*3='));
    const [c] = await sampler.sampleWithTokens({
      promptTokens: prompt,
      maxTokens: 6,
      echo: true,
      temperature: 0,
    });
    expect(c?.snapshotIdentity).toBe('policy-1');
    expect(c?.inferenceLogprobs).toHaveLength((c?.fullTokens.length ?? 0) - 1);
    const tok = createByteTokenizer();
    expect(c?.text).toBe(
      tok.decode((c?.fullTokens.slice(prompt.length) ?? []).filter((t) => t !== tok.eosId)),
    );
    const eng = await engineLogprobs(w, c?.fullTokens ?? []);
    expect(mae(c?.inferenceLogprobs ?? [], eng)).toBeLessThan(1e-4);

    // maxSeqLen: a prompt at the limit sends nothing (the URL would fail), long completions are dropped
    const offline = new DeploymentSampler({ inferenceUrl: 'http://127.0.0.1:9', deployment: name });
    expect(
      await offline.sampleWithTokens({ promptTokens: prompt, maxSeqLen: prompt.length }),
    ).toEqual([]);
    const some = await sampler.sampleWithTokens({
      promptTokens: prompt,
      n: 3,
      maxTokens: 10,
      ignoreEos: true,
      maxSeqLen: prompt.length + 9,
    });
    expect(some).toEqual([]); // every completion is 10 tokens: all over the limit
    const fits = await sampler.sampleWithTokens({
      promptTokens: prompt,
      n: 2,
      maxTokens: 9,
      ignoreEos: true,
      maxSeqLen: prompt.length + 9,
    });
    expect(fits).toHaveLength(2);

    await expect(hl.hotload('a/b')).rejects.toThrow(DeploymentSamplerError);
  });
});

// Deployments with the Fireworks SDK's fields (hotLoadTrainerJob, forTraining, deployment
// shapes, PATCH with an update mask) and the hot-load / inference routes on the control-plane
// port, routed by the fireworks-deployment header or the body's model, over a real
// DeploymentRegistry (real replica processes) and a real listening control plane.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileUrlToRoot } from '../../src/checkpoints/object-store/index.js';
import { baseTensors, perturb, writeFull } from '../deployments/fixtures.js';
import { type GatewayHarness, startGatewayHarness } from '../support/gateways.js';
import type { Json } from './harness.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
const SHAPE = 'accounts/temper/deploymentShapes/byte-lm-3m-cpu/versions/1';
let h: GatewayHarness;
let url: string;
let http: GatewayHarness['http'];

beforeAll(async () => {
  h = await startGatewayHarness({ credentials: 'none' });
  url = h.url;
  http = h.http;
});
afterAll(async () => {
  await h?.close();
});

const hotLoadHeaders = (deployment: string) => ({
  'fireworks-model': BASE,
  'fireworks-deployment': deployment,
});

async function trainer(id: string): Promise<string> {
  const r = await h.call('POST', `/v1/accounts/alice/rlorTrainerJobs?rlorTrainerJobId=${id}`, {
    body: { serviceMode: true, trainingConfig: { baseModel: BASE, loraRank: 0 } },
  });
  if (r.status !== 200) throw new Error(JSON.stringify(r.json));
  return `accounts/alice/rlorTrainerJobs/${id}`;
}

async function waitIdentity(deployment: string, identity: string): Promise<Json> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const s = await http('GET', '/hot_load/v1/models/hot_load', {
      headers: hotLoadHeaders(deployment),
    });
    const r = s.json.replicas?.[0];
    if (r?.readiness && r.current_snapshot_identity === identity) return s.json;
    if (Date.now() > deadline) throw new Error(`not loaded: ${JSON.stringify(s.json)}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

describe('deployments with the SDK fields', () => {
  let job: string;
  const name = 'accounts/alice/deployments/rollouts';

  it("creates one that serves a trainer's sampler snapshots, with the SDK's body and query", async () => {
    job = await trainer('policy-a');
    const c = await http(
      'POST',
      '/v1/accounts/alice/deployments?deploymentId=rollouts&skipShapeValidation=true',
      {
        bearer: false,
        body: {
          baseModel: BASE,
          description: 'Fireworks training deployment',
          minReplicaCount: 1,
          maxReplicaCount: 1,
          enableHotLoad: true,
          forTraining: true,
          hotLoadBucketType: 'FW_HOSTED',
          hotLoadTrainerJob: job,
          deploymentShape: SHAPE,
          extraValues: { ignored: 'yes' },
        },
      },
    );
    expect(c.status).toBe(200);
    expect(c.json).toMatchObject({
      name,
      state: 'READY',
      baseModel: BASE,
      forTraining: true,
      hotLoadTrainerJob: job,
      hotLoadTransitionType: 'ASYNC',
      deploymentShape: SHAPE,
      description: 'Fireworks training deployment',
    });
    expect(fileUrlToRoot(c.json.hotLoadBucketUrl)).toBe(
      join(fileUrlToRoot(h.checkpoints.url), 'accounts/alice/rlorTrainerJobs/policy-a/checkpoints'),
    );
    const again = await http('GET', `/v1/${name}`, { bearer: false });
    expect(again.json).toMatchObject({ hotLoadTrainerJob: job, forTraining: true });
    const dup = await http('POST', '/v1/accounts/alice/deployments?deploymentId=rollouts', {
      body: { baseModel: BASE },
    });
    expect(dup.status).toBe(409);
  }, 60_000);

  it('refuses a wrong shape, a trainer of another account or model, and both bucket kinds', async () => {
    const post = (body: Json) =>
      http('POST', '/v1/accounts/alice/deployments?deploymentId=bad', { body });
    expect(
      (await post({ baseModel: BASE, deploymentShape: 'accounts/temper/deploymentShapes/nope' }))
        .json.error.message,
    ).toBe(
      `deploymentShape: 'accounts/temper/deploymentShapes/nope' is not a deployment shape (known: ${SHAPE})`,
    );
    expect(
      (await post({ baseModel: BASE, hotLoadTrainerJob: 'accounts/bob/rlorTrainerJobs/x' })).json
        .error.message,
    ).toBe('hotLoadTrainerJob: accounts/bob/rlorTrainerJobs/x not found');
    const both = await post({
      baseModel: BASE,
      hotLoadTrainerJob: job,
      hotLoadBucketUrl: 's3://b/p',
    });
    expect(both.status).toBe(400);
    expect(both.json.error.message).toBe(
      "give hotLoadTrainerJob (serve that trainer's sampler snapshots) or hotLoadBucketUrl, not both",
    );
    expect((await post({ baseModel: BASE, replicaz: 1 })).json.error.message).toBe(
      'body: unknown field(s) replicaz',
    );
    expect((await h.call('GET', '/v1/accounts/alice/deployments/bad')).status).toBe(404);
  });

  it('hot-loads a snapshot through the control-plane port, routed by the header', async () => {
    const bucket = join(
      fileUrlToRoot(h.checkpoints.url),
      'accounts/alice/rlorTrainerJobs/policy-a/checkpoints',
    );
    await writeFull(bucket, 'step-1-abcd0123', perturb(await baseTensors(), 1));
    const signal = await http('POST', '/hot_load/v1/models/hot_load', {
      headers: hotLoadHeaders(name),
      body: { identity: 'step-1-abcd0123', reset_prompt_cache: true },
    });
    expect(signal.status).toBe(200);
    const status = await waitIdentity(name, 'step-1-abcd0123');
    expect(status.replicas[0].loading_state).toMatchObject({ stage: 'ready' });
    // a completion sampled through the control-plane port comes from that snapshot
    const done = await http('POST', '/inference/v1/completions', {
      body: { model: name, prompt: [1, 2], max_tokens: 4, temperature: 0 },
    });
    expect(done.status).toBe(200);
    expect(done.json.snapshot_identity).toBe('step-1-abcd0123');
    // a snapshot that is not in the bucket: the gateway's 404, passed on
    const missing = await http('POST', '/hot_load/v1/models/hot_load', {
      headers: hotLoadHeaders(name),
      body: { identity: 'step-9-abcd0123' },
    });
    expect(missing.status).toBe(404);
    expect(missing.json.error.message).toMatch(/step-9-abcd0123\/config.json does not exist/);
  }, 60_000);

  it('routes inference by deployment name, model#deployment and model, and streams SSE', async () => {
    const body = { prompt: 'User: hi\nAssistant:', max_tokens: 6, temperature: 0 };
    const byName = await http('POST', '/inference/v1/completions', {
      body: { ...body, model: name },
    });
    const byHash = await http('POST', '/inference/v1/completions', {
      body: { ...body, model: `${BASE}#${name}` },
    });
    const byModel = await http('POST', '/inference/v1/completions', {
      body: { ...body, model: BASE },
    });
    for (const r of [byName, byHash, byModel]) expect(r.status).toBe(200);
    expect(byHash.json.choices[0].text).toBe(byName.json.choices[0].text);
    expect(byModel.json.choices[0].text).toBe(byName.json.choices[0].text);
    const sse = await http('POST', '/inference/v1/completions', {
      body: { ...body, model: name, stream: true },
    });
    expect(sse.headers.get('content-type')).toBe('text/event-stream');
    expect(sse.text.trim().endsWith('data: [DONE]')).toBe(true);
  }, 60_000);

  it('lists the models of every READY deployment on the bare /inference/v1/models (OpenAI clients)', async () => {
    const list = await http('GET', '/inference/v1/models');
    expect(list.status).toBe(200);
    expect(list.json.object).toBe('list');
    expect(list.json.data.map((m: Json) => m.id)).toEqual([BASE]);
    expect(list.json.data[0]).toMatchObject({ object: 'model', owned_by: 'temper' });
    const one = await http('GET', `/inference/v1/models/${encodeURIComponent(BASE)}`);
    expect(one.status).toBe(200);
    expect(one.json.id).toBe(BASE);
    // another account sees none of alice's deployments
    const bob = await http('GET', '/inference/v1/models', { key: h.bob });
    expect(bob.json).toEqual({ object: 'list', data: [] });
    const bobOne = await http('GET', `/inference/v1/models/${encodeURIComponent(BASE)}`, {
      key: h.bob,
    });
    expect(bobOne.status).toBe(404);
    const post = await http('POST', '/inference/v1/models', { body: {} });
    expect(post.status).toBe(404);
  });

  it("refuses another account's deployment (404, as if absent) and says what is missing", async () => {
    const bobStatus = await http('GET', '/hot_load/v1/models/hot_load', {
      key: h.bob,
      headers: hotLoadHeaders(name),
    });
    expect(bobStatus.status).toBe(404);
    expect(bobStatus.json.error.message).toBe(`${name} not found`);
    const bobSample = await http('POST', '/inference/v1/completions', {
      key: h.bob,
      body: { model: name, prompt: [1, 2], max_tokens: 2 },
    });
    expect(bobSample.status).toBe(404);
    expect(bobSample.json.error.message).toBe(`${name} not found`);
    const bobByModel = await http('POST', '/inference/v1/completions', {
      key: h.bob,
      body: { model: BASE, prompt: [1, 2], max_tokens: 2 },
    });
    expect(bobByModel.json.error.message).toBe(
      `no deployment of accounts/bob serves ${BASE}: create one (POST /v1/accounts/bob/deployments) or name a deployment (model: accounts/bob/deployments/{id})`,
    );
    const noKey = await fetch(`${url}/inference/v1/completions`, { method: 'POST', body: '{}' });
    expect(noKey.status).toBe(401);
    const noTarget = await http('GET', '/hot_load/v1/models/hot_load');
    expect(noTarget.status).toBe(400);
    expect(noTarget.json.error.message).toBe(
      '/hot_load/v1/models/hot_load: name the deployment with the header "fireworks-deployment: accounts/{account}/deployments/{id}" or the body\'s model',
    );
    const badHeader = await http('GET', '/hot_load/v1/models/hot_load', {
      headers: { 'fireworks-deployment': 'rollouts' },
    });
    expect(badHeader.json.error.message).toBe(
      "fireworks-deployment header: 'rollouts' is not a deployment name (accounts/{account}/deployments/{id})",
    );
    const clash = await http('POST', '/inference/v1/completions', {
      headers: { 'fireworks-deployment': 'accounts/alice/deployments/other' },
      body: { model: name, prompt: [1] },
    });
    expect(clash.json.error.message).toBe(
      `model names ${name} but the fireworks-deployment header names accounts/alice/deployments/other: name one deployment`,
    );
  });

  it('reattaches to another trainer with an update mask (the replicas restart on the base model)', async () => {
    const other = await trainer('policy-b');
    const p = await http('PATCH', `/v1/${name}?updateMask=hot_load_trainer_job`, {
      bearer: false,
      body: { hotLoadTrainerJob: other, description: 'not in the mask' },
    });
    expect(p.status).toBe(200);
    expect(p.json).toMatchObject({
      state: 'READY',
      hotLoadTrainerJob: other,
      description: 'Fireworks training deployment',
    });
    expect(p.json.hotLoadBucketUrl).toMatch(/rlorTrainerJobs\/policy-b\/checkpoints$/);
    const s = await http('GET', '/hot_load/v1/models/hot_load', { headers: hotLoadHeaders(name) });
    expect(s.json.replicas).toHaveLength(1);
    expect(s.json.replicas[0].current_snapshot_identity).toBeNull();
    const badMask = await http('PATCH', `/v1/${name}?updateMask=base_model`, { body: {} });
    expect(badMask.json.error.message).toMatch(
      /^updateMask: 'base_model' cannot be updated \(updatable: /,
    );
  }, 60_000);

  it('streams events as they are generated, and a caller that goes away stops the generation', async () => {
    const ctl = new AbortController();
    const res = await fetch(`${url}/inference/v1/completions`, {
      method: 'POST',
      signal: ctl.signal,
      headers: { authorization: `Bearer ${h.alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: name,
        prompt: [1, 2],
        max_tokens: 500,
        ignore_eos: true,
        stream: true,
      }),
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    // an event arrived while the generation still runs: nothing waits for the whole body
    expect(new TextDecoder().decode(first.value)).toMatch(/^data: /);
    const status = async () =>
      (await http('GET', '/hot_load/v1/models/hot_load', { headers: hotLoadHeaders(name) })).json
        .replicas[0];
    ctl.abort();
    const deadline = Date.now() + 20_000;
    while ((await status()).inflight !== 0) {
      if (Date.now() > deadline) throw new Error('the generation went on after the caller left');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await status()).generated_tokens).toBeLessThan(500);
  }, 60_000);

  it('scales to zero with the SDK body (no mask); inference then says so; delete with its query', async () => {
    const z = await http('PATCH', `/v1/${name}`, {
      bearer: false,
      body: { maxReplicaCount: 0, minReplicaCount: 0 },
    });
    expect(z.json).toMatchObject({ state: 'READY', replicaCount: 0, maxReplicaCount: 0 });
    const s = await http('POST', '/inference/v1/completions', {
      body: { model: name, prompt: [1, 2], max_tokens: 2 },
    });
    expect(s.status).toBe(503);
    expect(s.json.error.message).toBe(`${name} has no replicas (scaled to zero)`);
    const d = await http('DELETE', `/v1/${name}?ignoreChecks=true&hard=true`, { bearer: false });
    expect(d.status).toBe(200);
    expect((await http('GET', `/v1/${name}`)).status).toBe(404);
  }, 60_000);
});

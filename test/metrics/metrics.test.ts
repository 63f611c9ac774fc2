// Prometheus /metrics, scraped over HTTP: the control plane of the real platform parts
// (Temporal dev server, SQLite, a worker) counts requests by route pattern and status and
// jobs by state; a real deployment's gateway (one replica process) counts its requests and
// hot-loads, behind the deployment's credential, and hands out its replica's own metrics; a
// real trainer pod serves its calls' counts on its metrics port, behind the pod's token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeploymentRegistry, type DeploymentResource } from '../../src/deployments/index.js';
import { createTrainerClient } from '../../src/trainer/client.js';
import type { LocalProcessLauncher, TrainerEndpoint } from '../../src/trainer/launcher/index.js';
import { baseTensors, headers, perturb, waitLoaded, writeFull } from '../deployments/fixtures.js';
import { startBucketDeployment } from '../support/gateways.js';
import { waitFor } from '../support/platform.js';
import { sample } from '../support/prometheus-text.js';
import { type RestStack, startRestStack } from '../support/rest-stack.js';
import { tempDir, testLauncher, writeTinyModelDir } from '../trainer/helpers.js';

async function scrape(url: string, init: RequestInit = {}): Promise<string> {
  const res = await fetch(url, init);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
  return res.text();
}

describe('control plane /metrics', () => {
  let stack: RestStack;
  const JOBS = '/v1/accounts/acme/supervisedFineTuningJobs';

  beforeAll(async () => {
    stack = await startRestStack();
    await stack.uploadDataset(
      'answers',
      Array.from({ length: 64 }, (_, i) =>
        JSON.stringify({
          messages: [
            { role: 'user', content: `question ${i}` },
            { role: 'assistant', content: `answer ${i}` },
          ],
        }),
      ).join('\n'),
    );
  }, 120_000);

  afterAll(async () => {
    await stack?.close();
  });

  it('counts requests by route pattern and status, and jobs by kind and state', async () => {
    for (let i = 0; i < 3; i++) expect((await stack.call('GET', JOBS)).status).toBe(200);
    expect((await stack.call('GET', `${JOBS}/nope`)).status).toBe(404);
    expect((await stack.call('GET', JOBS, undefined, 'tmp_wrong')).status).toBe(401);
    expect((await stack.call('GET', '/no/such/route')).status).toBe(404);
    const created = await stack.call('POST', `${JOBS}?supervisedFineTuningJobId=counted`, {
      baseModel: 'accounts/temper/models/byte-lm-3m',
      dataset: 'accounts/acme/datasets/answers',
      outputModel: 'accounts/acme/models/counted',
      epochs: 1,
      loraRank: 0,
    });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    expect((await stack.call('POST', `${JOBS}/counted:cancel`)).status).toBe(200);
    await waitFor(
      'the job cancelled',
      async () =>
        (await stack.call('GET', `${JOBS}/counted`)).json.state === 'JOB_STATE_CANCELLED'
          ? true
          : undefined,
      60_000,
    );

    // open to a scraper: no key
    const text = await scrape(`${stack.base}/metrics`);
    const route = '/v1/accounts/:account/supervisedFineTuningJobs';
    const requests = 'temper_http_requests_total';
    expect(sample(text, requests, { method: 'GET', route, status: '200' })).toBe(3);
    expect(sample(text, requests, { method: 'GET', route, status: '401' })).toBe(1);
    expect(
      sample(text, requests, { method: 'GET', route: `${route}/:target`, status: '404' }),
    ).toBe(1);
    expect(sample(text, requests, { method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
    expect(sample(text, requests, { method: 'POST', route, status: '200' })).toBe(1);
    expect(
      sample(text, 'temper_http_request_duration_seconds_count', {
        method: 'GET',
        route,
        status: '200',
      }),
    ).toBe(3);
    expect(
      sample(text, 'temper_jobs', {
        kind: 'supervisedFineTuningJobs',
        state: 'JOB_STATE_CANCELLED',
      }),
    ).toBe(1);
    // ids and keys never become labels; the process's own metrics are there
    expect(text).not.toContain('counted');
    expect(text).not.toContain('acme');
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });
});

describe('deployment gateway /metrics', () => {
  // Gateways that require a credential (the deployment's access token; no account keys here).
  const registry = new DeploymentRegistry(undefined, {
    auth: { verifyKey: async () => null },
  });
  let dep: DeploymentResource;
  let url: string;
  let bucket: { dir: string; url: string };

  beforeAll(async () => {
    ({ dep, url, bucket } = await startBucketDeployment(registry, { deploymentId: 'scraped' }));
    await writeFull(bucket.dir, 'v1', perturb(await baseTensors(), 1));
  }, 60_000);

  afterAll(async () => {
    await registry.close();
  });

  it('counts requests and hot-loads (signalled and refused) of its deployment, for its credential only', async () => {
    const H = { ...headers(dep.name), ...registry.authHeaders(dep.name) };
    const post = (path: string, body: unknown) =>
      fetch(`${url}${path}`, { method: 'POST', headers: H, body: JSON.stringify(body) });
    expect((await post('/hot_load/v1/models/hot_load', { identity: 'v1' })).status).toBe(200);
    await waitLoaded(url, 'v1', 20_000, H);
    const refused = await post('/hot_load/v1/models/hot_load', {
      identity: 'v2',
      incremental_snapshot_metadata: {
        previous_snapshot_identity: 'never',
        compression_format: 'arc_v2',
        checksum_format: 'alder32',
      },
    });
    expect(refused.status).toBe(400);
    const done = await post('/inference/v1/completions', { prompt: 'The cat ', max_tokens: 4 });
    expect(done.status).toBe(200);
    await done.text();
    expect((await fetch(`${url}/inference/v1/models/nope`, { headers: H })).status).toBe(404);

    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    const text = await scrape(`${url}/metrics`, { headers: H });
    const deployment = dep.name;
    const hot = 'temper_hotloads_total';
    expect(sample(text, hot, { deployment, snapshot_type: 'full', result: 'signalled' })).toBe(1);
    expect(sample(text, hot, { deployment, snapshot_type: 'delta', result: 'refused' })).toBe(1);
    const requests = 'temper_http_requests_total';
    expect(
      sample(text, requests, {
        deployment,
        method: 'POST',
        route: '/inference/v1/completions',
        status: '200',
      }),
    ).toBe(1);
    expect(
      sample(text, requests, {
        deployment,
        method: 'POST',
        route: '/hot_load/v1/models/hot_load',
        status: '400',
      }),
    ).toBe(1);
    expect(
      sample(text, requests, {
        deployment,
        method: 'GET',
        route: '/inference/v1/models/:model',
        status: '404',
      }),
    ).toBe(1);
    expect(
      sample(text, requests, { deployment, method: 'GET', route: '/metrics', status: '401' }),
    ).toBe(1);
    expect(text).not.toContain('nope');
  });

  it("serves each replica's own metrics, fetched with the replica's token, behind the deployment's credential", async () => {
    const H = { ...headers(dep.name), ...registry.authHeaders(dep.name) };
    const [replica] = registry.replicas(dep.name);
    const id = replica!.id;
    const path = `/metrics/replicas/${encodeURIComponent(id)}`;
    // A hot-load and a generation of this test's own, so that it stands alone.
    await writeFull(bucket.dir, 'r1', perturb(await baseTensors(), 3));
    const signal = await fetch(`${url}/hot_load/v1/models/hot_load`, {
      method: 'POST',
      headers: H,
      body: JSON.stringify({ identity: 'r1' }),
    });
    expect(signal.status).toBe(200);
    await waitLoaded(url, 'r1', 20_000, H);
    const done = await fetch(`${url}/inference/v1/completions`, {
      method: 'POST',
      headers: H,
      body: JSON.stringify({ prompt: 'The dog ', max_tokens: 3, temperature: 0 }),
    });
    expect(done.status).toBe(200);
    await done.text();

    // Only the gateway holds the replica's token: a direct scrape is refused.
    expect((await fetch(`${replica!.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${url}${path}`)).status).toBe(401);
    const missing = await fetch(`${url}/metrics/replicas/nope`, { headers: H });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { message: string } }).error.message).toContain(
      `it has ${id}`,
    );

    const text = await scrape(`${url}${path}`, { headers: H });
    expect(sample(text, 'temper_replica_ready', { replica: id })).toBe(1);
    expect(sample(text, 'temper_replica_inflight_requests', { replica: id })).toBe(0);
    expect(
      sample(text, 'temper_replica_hot_loads_total', {
        replica: id,
        kind: 'full',
        outcome: 'ready',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'temper_replica_generated_tokens_total', { replica: id })).toBeGreaterThan(
      0,
    );
    expect(
      sample(text, 'temper_replica_prefix_cache_lookups_total', { replica: id }),
    ).toBeGreaterThan(0);
    const requests = 'temper_http_requests_total';
    expect(
      sample(text, requests, { replica: id, method: 'POST', route: '/generate', status: '200' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sample(text, requests, { replica: id, method: 'GET', route: '/metrics', status: '401' }),
    ).toBe(1);
    // The process's own metrics carry the replica's id too (the scrape is that process's).
    expect(sample(text, 'process_resident_memory_bytes', { replica: id })).toBeGreaterThan(0);
    // The gateway counts the pass-through under one route pattern, never the replica's id.
    const gateway = await scrape(`${url}/metrics`, { headers: H });
    expect(
      sample(gateway, requests, {
        deployment: dep.name,
        method: 'GET',
        route: '/metrics/replicas/:replica',
        status: '200',
      }),
    ).toBe(1);
  }, 60_000);
});

describe('trainer pod /metrics', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;
  let pod: TrainerEndpoint;

  beforeAll(async () => {
    tmp = await tempDir('trainer-metrics');
    const modelDir = await writeTinyModelDir(`${tmp.dir}/model`);
    launcher = testLauncher(`${tmp.dir}/jobs`);
    pod = await launcher.launch({ baseModel: modelDir, threads: 1, inactivityTimeoutMs: 0 });
  }, 60_000);

  afterAll(async () => {
    if (pod) await launcher.stop(pod.jobId);
    await tmp?.cleanup();
  });

  it("counts the pod's calls by RPC and outcome, behind the pod's token", async () => {
    const auth = { authorization: `Bearer ${pod.token}` };
    const metricsAddress = (await launcher.get(pod.jobId))?.metricsAddress;
    expect(metricsAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    const metricsUrl = `http://${metricsAddress}/metrics`;
    const rpcs = 'temper_trainer_rpcs_total';
    // The launcher's readiness probe already called Health: count from here.
    const healthBefore =
      sample(await scrape(metricsUrl, { headers: auth }), rpcs, { rpc: 'Health', code: 'ok' }) ?? 0;
    const client = createTrainerClient(pod.address, pod.token);
    try {
      await client.health({});
      await client.health({});
      const { sessionId } = await client.createSession({});
      expect(sessionId).toBeTruthy();
      await expect(client.getInfo({ modelId: 'nope' })).rejects.toThrow(/nope/);
    } finally {
      client.close();
    }
    expect((await fetch(metricsUrl)).status).toBe(401);
    const other = await fetch(metricsUrl, { headers: { authorization: 'Bearer not-its-token' } });
    expect(other.status).toBe(401);
    expect((await fetch(`http://${metricsAddress}/other`, { headers: auth })).status).toBe(404);

    const text = await scrape(metricsUrl, { headers: auth });
    expect(sample(text, rpcs, { rpc: 'Health', code: 'ok' })).toBe(healthBefore + 2);
    expect(sample(text, rpcs, { rpc: 'CreateSession', code: 'ok' })).toBe(1);
    expect(sample(text, rpcs, { rpc: 'GetInfo', code: 'unknown_model' })).toBe(1);
    expect(
      sample(text, 'temper_trainer_rpc_duration_seconds_count', { rpc: 'Health', code: 'ok' }),
    ).toBe(healthBefore + 2);
    expect(text).toMatch(/^temper_trainer_sessions 1$/m);
    expect(text).toMatch(/^temper_trainer_models 0$/m);
    expect(text).toMatch(/^temper_trainer_draining 0$/m);
    expect(text).toMatch(/^temper_trainer_idle_seconds \d/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(
      sample(text, 'temper_http_requests_total', {
        method: 'GET',
        route: 'unmatched',
        status: '404',
      }),
    ).toBe(1);
    expect(
      sample(text, 'temper_http_requests_total', {
        method: 'GET',
        route: '/metrics',
        status: '401',
      }),
    ).toBe(2);
    // The token is no label or value of any series.
    expect(text).not.toContain(pod.token);
  }, 60_000);
});

// Prometheus /metrics, scraped over HTTP: the control plane of the real platform parts
// (Temporal dev server, SQLite, a worker) counts requests by route pattern and status and
// jobs by state; a real deployment's gateway (one replica process) counts its requests and
// hot-loads, behind the deployment's credential.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeploymentRegistry, type DeploymentResource } from '../../src/deployments/index.js';
import { baseTensors, headers, perturb, writeFull } from '../deployments/fixtures.js';
import { startBucketDeployment } from '../support/gateways.js';
import { waitFor } from '../support/platform.js';
import { type RestStack, startRestStack } from '../support/rest-stack.js';

/** The value of one series in a text exposition, or undefined when it is absent. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.indexOf('}'));
    const got = Object.fromEntries(
      [...body.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v))
      return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

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
    await waitFor(
      'v1 loaded',
      async () => {
        const status = (await (
          await fetch(`${url}/hot_load/v1/models/hot_load`, { headers: H })
        ).json()) as { replicas: { current_snapshot_identity: string | null }[] };
        return status.replicas[0]?.current_snapshot_identity === 'v1' ? true : undefined;
      },
      20_000,
    );
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
});

// Deployments as store rows (issue 14 item 7): the control plane's registry writes each
// deployment to the store (a real SQLite file), keeps the rows when it stops, and a new
// registry brings them back at start-up (`restoreDeployments`): same fields and replica
// counts, a new gateway and access token, serving. Delete removes the row; a row this
// version cannot read is reported, not dropped. No credential is written to the store, a
// registry's gateways refuse callers without one unless a test opts out by name, and a
// deployment create naming `remoteServerUrl` is refused.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlPlane, createControlPlane } from '../../src/control-plane/index.js';
import { DeploymentRegistry } from '../../src/deployments/registry.js';
import { type Harness, startHarness } from '../control-plane/harness.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
const A = 'accounts/alice/deployments/kept';
const B = 'accounts/alice/deployments/idle';

let h: Harness;
const registries: DeploymentRegistry[] = [];
const planes: ControlPlane[] = [];

function registry(): DeploymentRegistry {
  // As `temper up` builds it: account keys checked by the store, rows in the store.
  const r = new DeploymentRegistry(undefined, {
    auth: { verifyKey: async (key) => (await h.store.resolveApiKey(key))?.account ?? null },
    records: h.store,
  });
  registries.push(r);
  return r;
}

function controlPlane(deployments: DeploymentRegistry): ControlPlane {
  const cp = createControlPlane({
    store: h.store,
    orchestrator: h.orchestrator,
    artifacts: h.artifacts,
    checkpointUrl: h.checkpoints.url,
    deployments,
  });
  planes.push(cp);
  return cp;
}

async function call(
  cp: ControlPlane,
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  url: string,
  body?: unknown,
) {
  const res = await cp.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${h.alice}` },
    ...(body === undefined ? {} : { payload: body as Record<string, unknown> }),
  });
  return { status: res.statusCode, json: res.body ? JSON.parse(res.body) : {} };
}

async function complete(gatewayUrl: string, headers: Record<string, string>) {
  const res = await fetch(`${gatewayUrl}/inference/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: BASE, prompt: [1, 2, 3], max_tokens: 3, temperature: 0 }),
  });
  return { status: res.status, json: (await res.json()) as { choices: Array<{ text: string }> } };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  for (const cp of planes) await cp.close();
  for (const r of registries) await r.close();
  await h.close();
});

describe('deployments as store rows', () => {
  let first: DeploymentRegistry;
  let cp1: ControlPlane;
  let oldToken = '';
  let oldPids: number[] = [];
  let firstText = '';

  it('writes each deployment to the store on create and change, without its credentials', async () => {
    first = registry();
    cp1 = controlPlane(first);
    const kept = await call(cp1, 'POST', '/v1/accounts/alice/deployments?deploymentId=kept', {
      baseModel: BASE,
      displayName: 'kept across restarts',
    });
    expect(kept.status, JSON.stringify(kept.json)).toBe(200);
    expect(kept.json.state).toBe('READY');
    const idle = await call(cp1, 'POST', '/v1/accounts/alice/deployments?deploymentId=idle', {
      baseModel: BASE,
      minReplicaCount: 0,
      maxReplicaCount: 0,
    });
    expect(idle.status, JSON.stringify(idle.json)).toBe(200);
    const patched = await call(cp1, 'PATCH', `/v1/${A}`, { description: 'patched before' });
    expect(patched.status, JSON.stringify(patched.json)).toBe(200);

    const rows = await h.store.listDeployments();
    expect(rows.map((r) => [r.name, r.account])).toEqual([
      [A, 'alice'],
      [B, 'alice'],
    ]);
    expect(rows[0]!.spec).toMatchObject({
      request: {
        baseModel: BASE,
        minReplicaCount: 0,
        maxReplicaCount: 1,
        fields: { displayName: 'kept across restarts', description: 'patched before' },
      },
    });
    expect(rows[1]!.spec).toMatchObject({ request: { minReplicaCount: 0, maxReplicaCount: 0 } });

    const gw = first.get(A).gatewayUrl!;
    const sample = await complete(gw, first.authHeaders(A));
    expect(sample.status, JSON.stringify(sample.json)).toBe(200);
    firstText = sample.json.choices[0]!.text;
    oldToken = first.accessToken(A);
    oldPids = first.replicas(A).map((r) => r.pid);
    expect(oldPids).toHaveLength(1);
    // The access token lives in memory only: not in the database file or its WAL.
    for (const file of ['temper.db', 'temper.db-wal']) {
      const bytes = await readFile(join(h.dir, file)).catch(() => Buffer.alloc(0));
      expect(bytes.includes(Buffer.from(oldToken)), file).toBe(false);
    }
  }, 60_000);

  it('refuses remoteServerUrl at deployment create, saying where it belongs', async () => {
    const r = await call(cp1, 'POST', '/v1/accounts/alice/deployments?deploymentId=ssrf', {
      baseModel: BASE,
      remoteServerUrl: 'http://127.0.0.1:9/admin',
    });
    expect(r.status).toBe(400);
    expect(r.json.error.message).toBe(
      'remoteServerUrl is not a deployment setting: deployments never call user servers. A remote environment belongs to a reinforcementFineTuningJob (its remoteServerUrl, which the worker only calls on public addresses)',
    );
    expect((await h.store.listDeployments()).map((d) => d.name)).toEqual([A, B]);
  });

  it('a stopped control plane keeps the rows; the next one brings the deployments back', async () => {
    await cp1.close();
    await first.close();
    for (const pid of oldPids) expect(alive(pid), `replica ${pid} stopped`).toBe(false);
    expect((await h.store.listDeployments()).map((d) => d.name)).toEqual([A, B]);

    const second = registry();
    const cp2 = controlPlane(second);
    expect(await cp2.restoreDeployments()).toEqual({ restored: [A, B], failed: [] });
    const got = await call(cp2, 'GET', `/v1/${A}`);
    expect(got.status).toBe(200);
    expect(got.json).toMatchObject({
      state: 'READY',
      displayName: 'kept across restarts',
      description: 'patched before',
      replicaCount: 1,
    });
    expect(second.get(A).status.reason).toBe(
      'restored at start-up: serving the base model until the next hot-load',
    );
    expect((await call(cp2, 'GET', `/v1/${B}`)).json).toMatchObject({
      state: 'READY',
      replicaCount: 0,
      maxReplicaCount: 0,
    });
    const listed = await call(cp2, 'GET', '/v1/accounts/alice/deployments');
    expect(listed.json.deployments.map((d: { name: string }) => d.name).sort()).toEqual([B, A]);

    // Serving again, on a new gateway with a new token; the old token opens nothing.
    const gw = second.get(A).gatewayUrl!;
    const again = await complete(gw, second.authHeaders(A));
    expect(again.status, JSON.stringify(again.json)).toBe(200);
    expect(again.json.choices[0]!.text).toBe(firstText);
    expect(second.accessToken(A)).not.toBe(oldToken);
    expect((await complete(gw, { authorization: `Bearer ${oldToken}` })).status).toBe(401);
    // An account key still works (checked against the store), another account's is a 404.
    expect((await complete(gw, { authorization: `Bearer ${h.alice}` })).status).toBe(200);
    expect((await complete(gw, { authorization: `Bearer ${h.bob}` })).status).toBe(404);

    // Delete removes the row: it does not come back.
    expect((await call(cp2, 'DELETE', `/v1/${B}`)).status).toBe(200);
    expect((await h.store.listDeployments()).map((d) => d.name)).toEqual([A]);
    await cp2.close();
    await second.close();
  }, 90_000);

  it('reports a stored row it cannot read instead of dropping it; gateways refuse anonymous callers by default', async () => {
    await h.store.putDeployment({
      name: 'accounts/alice/deployments/junk',
      account: 'alice',
      spec: { written: 'by a future temper' },
    });
    // No auth option at all: gateways still check the deployment's access token.
    const third = new DeploymentRegistry(undefined, { records: h.store });
    registries.push(third);
    const out = await third.restore();
    expect(out.restored).toEqual([A]);
    expect(out.failed).toHaveLength(1);
    expect(out.failed[0]!.name).toBe('accounts/alice/deployments/junk');
    expect(out.failed[0]!.reason).toMatch(/^stored spec unreadable: request: /);
    expect((await h.store.listDeployments()).map((d) => d.name)).toContain(
      'accounts/alice/deployments/junk',
    );
    const gw = third.get(A).gatewayUrl!;
    const anonymous = await complete(gw, {});
    expect(anonymous.status).toBe(401);
    expect((await complete(gw, third.authHeaders(A))).status).toBe(200);
  }, 60_000);
});

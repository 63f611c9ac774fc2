// Deployments as store rows (issue 14 item 7): the control plane's registry writes each
// deployment to the store (a real SQLite file), keeps the rows when it stops, and a new
// registry brings them back at start-up (`restoreDeployments`): same fields and replica
// counts, a new gateway and access token, serving. Delete removes the row; a row this
// version cannot read is reported, not dropped. No credential is written to the store, a
// registry's gateways refuse callers without one unless a test opts out by name, and a
// deployment create naming `remoteServerUrl` is refused. Multi-LoRA addons loaded through
// deployedModels are kept in their deployment's row and answer as before after a restart,
// as does a deployment of a LoRA model; an unloaded addon stays gone, and one whose files
// are missing is reported and kept in the row.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlPlane, createControlPlane } from '../../src/control-plane/index.js';
import { DeploymentRegistry } from '../../src/deployments/registry.js';
import { processAlive } from '../../src/util/processes.js';
import { tempDir } from '../checkpoints/helpers.js';
import { type Harness, type Json, startHarness } from '../control-plane/harness.js';
import { accountKeyAuth } from '../support/gateways.js';
import { writePeftAdapter } from './fixtures.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
const A = 'accounts/alice/deployments/kept';
const B = 'accounts/alice/deployments/idle';

let h: Harness;
const registries: DeploymentRegistry[] = [];
const planes: ControlPlane[] = [];

function registry(): DeploymentRegistry {
  // As `temper up` builds it: account keys checked by the store, rows in the store.
  const r = new DeploymentRegistry(undefined, {
    auth: accountKeyAuth(() => h.store),
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
    for (const pid of oldPids) expect(processAlive(pid), `replica ${pid} stopped`).toBe(false);
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

describe('multi-LoRA addons and LoRA deployments across restarts', () => {
  const LORA = 'accounts/alice/models/lora-a';
  const MULTI = 'accounts/alice/deployments/multi';
  const SOLO = 'accounts/alice/deployments/solo';
  const ADDON = 'accounts/alice/deployedModels/a-on-multi';
  const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'];
  let reg: DeploymentRegistry;
  let cp: ControlPlane;
  let url = '';
  const before: Record<string, number[]> = {};

  async function http(method: string, path: string, body?: unknown) {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${h.alice}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : {}) as Json };
  }

  /** The greedy logprobs of a fixed prompt under `model` (through the control plane's port). */
  async function logprobs(model: string) {
    const r = await http('POST', '/inference/v1/completions', {
      model,
      prompt: 'User: what is 2+2?\nAssistant:',
      max_tokens: 4,
      logprobs: 0,
      echo: true,
      temperature: 0,
    });
    return {
      status: r.status,
      json: r.json,
      lps: r.json.choices?.[0]?.logprobs.token_logprobs.slice(1) as number[],
    };
  }

  /** Stops the control plane and its registry (rows kept) and starts the next pair. */
  async function restart() {
    await cp.close();
    await reg.close();
    reg = registry();
    cp = controlPlane(reg);
    url = await cp.listen(0, '127.0.0.1');
    return cp.restoreDeployments();
  }

  async function addonsOf(name: string): Promise<Json[]> {
    const row = (await h.store.listDeployments()).find((d) => d.name === name);
    expect(row, `${name} has a row`).toBeDefined();
    return (row?.spec as { addons?: Json[] } | undefined)?.addons ?? [];
  }

  beforeAll(async () => {
    // the rows of the tests above are theirs: this flow restores only its own
    for (const d of await h.store.listDeployments()) await h.store.deleteDeployment(d.name);
    reg = registry();
    cp = controlPlane(reg);
    url = await cp.listen(0, '127.0.0.1');
    // a LoRA model of the bundled base imported through REST (create, signed PUTs, validate)
    const dir = join(tempDir('addon-'), 'lora-a');
    await writePeftAdapter(dir, 1);
    const created = await http('POST', '/v1/accounts/alice/models?modelId=lora-a', {
      model: { kind: 'HF_PEFT_ADDON', peftDetails: { baseModel: BASE } },
    });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const bodies = await Promise.all(ADAPTER_FILES.map((f) => readFile(join(dir, f))));
    const ep = await http('POST', '/v1/accounts/alice/models/lora-a:getUploadEndpoint', {
      filenameToSize: Object.fromEntries(ADAPTER_FILES.map((f, i) => [f, bodies[i]!.length])),
    });
    expect(ep.status, JSON.stringify(ep.json)).toBe(200);
    for (const [i, f] of ADAPTER_FILES.entries())
      expect(
        (await fetch(ep.json.filenameToSignedUrls[f], { method: 'PUT', body: bodies[i] })).status,
      ).toBe(200);
    expect((await http('GET', '/v1/accounts/alice/models/lora-a:validateUpload')).json.state).toBe(
      'READY',
    );
  }, 60_000);

  it('an addon loaded through deployedModels and a LoRA deployment answer as before after a restart', async () => {
    const multi = await http('POST', '/v1/accounts/alice/deployments?deploymentId=multi', {
      baseModel: BASE,
      enableAddons: true,
    });
    expect(multi.json.state, JSON.stringify(multi.json)).toBe('READY');
    const solo = await http('POST', '/v1/accounts/alice/deployments?deploymentId=solo', {
      baseModel: LORA,
    });
    expect(solo.json.state, JSON.stringify(solo.json)).toBe('READY');
    const loaded = await http(
      'POST',
      '/v1/accounts/alice/deployedModels?deployedModelId=a-on-multi',
      {
        model: LORA,
        deployment: MULTI,
        displayName: 'adapter A',
      },
    );
    expect(loaded.status, JSON.stringify(loaded.json)).toBe(200);
    // the row keeps what loads it again: the model, its snapshot in the bucket, the record
    expect(await addonsOf(MULTI)).toEqual([
      {
        model: LORA,
        identity: 'lora-a-addon',
        fields: expect.objectContaining({ name: ADDON, displayName: 'adapter A' }),
      },
    ]);
    for (const model of [`${LORA}#${MULTI}`, `${BASE}#${MULTI}`, `${LORA}#${SOLO}`]) {
      const r = await logprobs(model);
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      before[model] = r.lps;
    }
    // the addon is not the base, and serves as the LoRA deployment does (same adapter)
    expect(before[`${LORA}#${MULTI}`]).not.toEqual(before[`${BASE}#${MULTI}`]);

    const out = await restart();
    expect(out.failed).toEqual([]);
    expect(out.restored.sort()).toEqual([MULTI, SOLO]);
    const got = await http('GET', `/v1/${ADDON}`);
    expect(got.status, JSON.stringify(got.json)).toBe(200);
    expect(got.json).toEqual(loaded.json);
    for (const model of Object.keys(before)) {
      const r = await logprobs(model);
      expect(r.status, `${model}: ${JSON.stringify(r.json)}`).toBe(200);
      expect(r.lps, model).toEqual(before[model]);
    }
  }, 90_000);

  it('an unloaded addon stays gone after a restart; one that cannot be loaded again is reported and kept', async () => {
    expect((await http('DELETE', `/v1/${ADDON}`)).status).toBe(200);
    expect(await addonsOf(MULTI)).toEqual([]);
    // an addon whose files are not in the bucket (written as a row would be)
    const row = (await h.store.listDeployments()).find((d) => d.name === MULTI)!;
    const ghost = { model: 'accounts/alice/models/ghost', identity: 'ghost-addon', fields: {} };
    await h.store.putDeployment({
      ...row,
      spec: { ...(row.spec as Json), addons: [ghost] },
    });

    const out = await restart();
    expect(out.restored).toEqual([SOLO]);
    expect(out.failed).toHaveLength(1);
    expect(out.failed[0]!.name).toBe(MULTI);
    expect(out.failed[0]!.reason).toMatch(
      /^restored at start-up, but addons could not be loaded again: accounts\/alice\/models\/ghost \(.*ghost-addon\/adapter_config\.json does not exist/,
    );
    expect(await addonsOf(MULTI)).toEqual([ghost]);
    expect((await http('GET', `/v1/${ADDON}`)).status).toBe(404);
    expect(
      (await http('GET', '/v1/accounts/alice/deployedModels')).json.deployedModels ?? [],
    ).toEqual([]);
    expect((await logprobs(`${LORA}#${MULTI}`)).status).toBe(404);
    // the deployment itself still serves, and the LoRA deployment its adapter
    expect((await logprobs(`${BASE}#${MULTI}`)).lps).toEqual(before[`${BASE}#${MULTI}`]);
    expect((await logprobs(`${LORA}#${SOLO}`)).lps).toEqual(before[`${LORA}#${SOLO}`]);
  }, 90_000);
});

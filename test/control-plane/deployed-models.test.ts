// Multi-LoRA through REST (the documentation's Load LoRA / Unload LoRA): two LoRA models
// imported into an account, loaded as addons on one deployment of their base model created
// with enableAddons (POST /deployedModels; one created without it refuses them), each request picking one by its model (plain or model#deployment)
// on the control-plane port, the base still answering as the base, and an addon unloaded
// (DELETE) while the other keeps serving. A real listening control plane over a real
// DeploymentRegistry (real replica processes).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TemperApi } from '../../src/cli/api/client.js';
import { createDeployment, loadLora, unloadLora } from '../../src/cli/commands/deployments.js';
import { tempDir } from '../checkpoints/helpers.js';
import { writePeftAdapter } from '../deployments/fixtures.js';
import { type GatewayHarness, startGatewayHarness } from '../support/gateways.js';
import type { Json } from './harness.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
const DEPLOYMENT = 'accounts/alice/deployments/shared';
const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'];
let h: GatewayHarness;

const http = (method: string, path: string, body?: unknown, key?: string) =>
  h.http(method, path, { ...(body === undefined ? {} : { body }), ...(key ? { key } : {}) });

/** A LoRA model of the bundled base imported through REST (create, signed PUTs, validate). */
async function importAdapter(id: string, seed: number): Promise<void> {
  const dir = join(tempDir('addon-'), id);
  await writePeftAdapter(dir, seed);
  const created = await http('POST', `/v1/accounts/alice/models?modelId=${id}`, {
    model: { kind: 'HF_PEFT_ADDON', peftDetails: { baseModel: BASE } },
  });
  expect(created.status, JSON.stringify(created.json)).toBe(200);
  const bodies = await Promise.all(ADAPTER_FILES.map((f) => readFile(join(dir, f))));
  const ep = await http('POST', `/v1/accounts/alice/models/${id}:getUploadEndpoint`, {
    filenameToSize: Object.fromEntries(ADAPTER_FILES.map((f, i) => [f, bodies[i]!.length])),
  });
  expect(ep.status, JSON.stringify(ep.json)).toBe(200);
  for (const [i, f] of ADAPTER_FILES.entries()) {
    const put = await fetch(ep.json.filenameToSignedUrls[f], { method: 'PUT', body: bodies[i] });
    expect(put.status).toBe(200);
  }
  const v = await http('GET', `/v1/accounts/alice/models/${id}:validateUpload`);
  expect(v.json.state, JSON.stringify(v.json)).toBe('READY');
}

const complete = (model: string) =>
  http('POST', '/inference/v1/completions', {
    model,
    prompt: 'User: what is 2+2?\nAssistant:',
    max_tokens: 4,
    logprobs: 0,
    echo: true,
    temperature: 0,
  });

const lps = (j: Json): number[] => j.choices[0].logprobs.token_logprobs.slice(1);

beforeAll(async () => {
  // The gateways take only each deployment's access token, which the control plane presents.
  h = await startGatewayHarness({ credentials: 'access token' });
  await importAdapter('lora-a', 1);
  await importAdapter('lora-b', 2);
  const d = await http('POST', '/v1/accounts/alice/deployments?deploymentId=shared', {
    baseModel: BASE,
    minReplicaCount: 1,
    maxReplicaCount: 1,
    enableAddons: true,
  });
  expect(d.json.state, JSON.stringify(d.json)).toBe('READY');
  expect(d.json.enableAddons).toBe(true);
}, 120_000);

afterAll(async () => {
  await h?.close();
});

describe('deployedModels (multi-LoRA)', () => {
  it('loads two LoRA models on one base deployment; each request picks its adapter; the base stays the base', async () => {
    const before = await complete(DEPLOYMENT);
    const a = await http('POST', '/v1/accounts/alice/deployedModels?deployedModelId=a-on-shared', {
      model: 'accounts/alice/models/lora-a',
      deployment: DEPLOYMENT,
      displayName: 'adapter A',
    });
    expect(a.status, JSON.stringify(a.json)).toBe(200);
    expect(a.json).toMatchObject({
      name: 'accounts/alice/deployedModels/a-on-shared',
      model: 'accounts/alice/models/lora-a',
      deployment: DEPLOYMENT,
      state: 'DEPLOYED',
      displayName: 'adapter A',
    });
    const b = await http('POST', '/v1/accounts/alice/deployedModels', {
      model: 'accounts/alice/models/lora-b',
      deployment: DEPLOYMENT,
    });
    expect(b.status, JSON.stringify(b.json)).toBe(200);
    const list = await http('GET', '/v1/accounts/alice/deployedModels');
    expect(list.json.deployedModels.map((x: Json) => x.model).sort()).toEqual([
      'accounts/alice/models/lora-a',
      'accounts/alice/models/lora-b',
    ]);
    const models = await http('GET', '/inference/v1/models');
    expect(models.json.data.map((m: Json) => m.id)).toEqual([
      BASE,
      'accounts/alice/models/lora-a',
      'accounts/alice/models/lora-b',
    ]);

    const [base, byModel, byHash, other] = await Promise.all([
      complete(`${BASE}#${DEPLOYMENT}`),
      complete('accounts/alice/models/lora-a'),
      complete(`accounts/alice/models/lora-a#${DEPLOYMENT}`),
      complete(`accounts/alice/models/lora-b#${DEPLOYMENT}`),
    ]);
    for (const r of [base, byModel, byHash, other])
      expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(byModel.json.model).toBe('accounts/alice/models/lora-a');
    expect(other.json.model).toBe('accounts/alice/models/lora-b');
    expect(lps(base.json)).toEqual(lps(before.json));
    expect(lps(byHash.json)).toEqual(lps(byModel.json));
    const differ = (x: number[], y: number[]) => x.some((v, i) => Math.abs(v - y[i]!) > 1e-3);
    expect(differ(lps(byModel.json), lps(base.json))).toBe(true);
    expect(differ(lps(other.json), lps(base.json))).toBe(true);
    expect(differ(lps(byModel.json), lps(other.json))).toBe(true);
  }, 60_000);

  it('refuses what cannot be loaded, with its reason', async () => {
    const again = await http('POST', '/v1/accounts/alice/deployedModels', {
      model: 'accounts/alice/models/lora-a',
      deployment: DEPLOYMENT,
    });
    expect(again.status).toBe(409);
    expect(again.json.error.message).toBe(
      `accounts/alice/models/lora-a is already loaded on ${DEPLOYMENT}`,
    );
    const notLora = await http('POST', '/v1/accounts/alice/deployedModels', {
      model: BASE,
      deployment: DEPLOYMENT,
    });
    expect(notLora.status).toBe(400);
    expect(notLora.json.error.message).toBe(
      `model: ${BASE} is not a LoRA adapter (kind HF_BASE_MODEL); deploy a base model with POST /v1/accounts/alice/deployments`,
    );
    const bob = await http(
      'POST',
      '/v1/accounts/bob/deployedModels',
      { model: 'accounts/bob/models/x', deployment: DEPLOYMENT },
      h.bob,
    );
    expect(bob.status).toBe(404);
    const badDeployment = await http('POST', '/v1/accounts/alice/deployedModels', {
      model: 'accounts/alice/models/lora-a',
      deployment: 'shared',
    });
    expect(badDeployment.status).toBe(400);
    expect(badDeployment.json.error.message).toBe(
      'deployment: expected a deployment name (accounts/{account}/deployments/{id})',
    );
  });

  it('a deployment created without enableAddons refuses addons, saying how to get them; PATCH enables them', async () => {
    const plain = await http('POST', '/v1/accounts/alice/deployments?deploymentId=plain', {
      baseModel: BASE,
    });
    expect(plain.json.state, JSON.stringify(plain.json)).toBe('READY');
    expect(plain.json.enableAddons).toBe(false);
    const refused = await http('POST', '/v1/accounts/alice/deployedModels', {
      model: 'accounts/alice/models/lora-a',
      deployment: 'accounts/alice/deployments/plain',
    });
    expect(refused.status).toBe(400);
    expect(refused.json.error.message).toBe(
      `deployment: accounts/alice/deployments/plain was created without addons enabled, so LoRA addons cannot be loaded on it: create a deployment of ${BASE} with enableAddons: true (temper deployment create --enable-addons), or deploy accounts/alice/models/lora-a itself`,
    );
    // nothing was loaded: the plain deployment serves its base only
    const list = await http('GET', '/v1/accounts/alice/deployedModels');
    expect(list.json.deployedModels.map((x: Json) => x.deployment)).not.toContain(
      'accounts/alice/deployments/plain',
    );
    const viaPlain = await complete(
      'accounts/alice/models/lora-a#accounts/alice/deployments/plain',
    );
    expect(viaPlain.status).toBe(404);
    // addons can be enabled later (PATCH), and not disabled while one is loaded
    const on = await http(
      'PATCH',
      '/v1/accounts/alice/deployments/plain?updateMask=enable_addons',
      {
        enableAddons: true,
      },
    );
    expect(on.json.enableAddons, JSON.stringify(on.json)).toBe(true);
    const loaded = await http('POST', '/v1/accounts/alice/deployedModels', {
      model: 'accounts/alice/models/lora-a',
      deployment: 'accounts/alice/deployments/plain',
    });
    expect(loaded.status, JSON.stringify(loaded.json)).toBe(200);
    const off = await http('PATCH', '/v1/accounts/alice/deployments/plain', {
      enableAddons: false,
    });
    expect(off.status).toBe(400);
    expect(off.json.error.message).toBe(
      'accounts/alice/deployments/plain serves LoRA addons (accounts/alice/models/lora-a): unload them (DELETE their deployedModels) before disabling addons',
    );
    expect((await http('GET', '/v1/accounts/alice/deployments/plain')).json.enableAddons).toBe(
      true,
    );
    expect((await http('DELETE', '/v1/accounts/alice/deployments/plain')).status).toBe(200);
    // as documented, addons are refused on quantized precisions
    const fp8 = await http('POST', '/v1/accounts/alice/deployments?deploymentId=fp8', {
      baseModel: BASE,
      enableAddons: true,
      precision: 'FP8',
    });
    expect(fp8.status).toBe(400);
    expect(fp8.json.error.message).toMatch(
      /^addons cannot be enabled with quantized precisions \(FP8\/FP4\): precision FP8/,
    );
    expect((await http('GET', '/v1/accounts/alice/deployments/fp8')).status).toBe(404);
  }, 60_000);

  it('unloads one addon (its requests then 404) while the other keeps serving', async () => {
    const del = await http('DELETE', '/v1/accounts/alice/deployedModels/a-on-shared');
    expect(del.status).toBe(200);
    expect((await http('GET', '/v1/accounts/alice/deployedModels/a-on-shared')).status).toBe(404);
    const gone = await complete(`accounts/alice/models/lora-a#${DEPLOYMENT}`);
    expect(gone.status).toBe(404);
    expect(gone.json.error.message).toMatch(
      /^The model 'accounts\/alice\/models\/lora-a' is not served by accounts\/alice\/deployments\/shared/,
    );
    // naming the model alone finds no deployment serving it any more
    expect((await complete('accounts/alice/models/lora-a')).status).toBe(404);
    expect((await complete('accounts/alice/models/lora-b')).status).toBe(200);
  }, 60_000);

  it('temper deployment create --enable-addons, temper load-lora and unload-lora', async () => {
    const api = new TemperApi({ apiUrl: h.url, apiKey: h.alice, account: 'alice' });
    const d = await createDeployment(api, BASE, { deploymentId: 'cli', enableAddons: true });
    expect(d).toMatchObject({ name: 'accounts/alice/deployments/cli', enableAddons: true });
    const loaded = await loadLora(api, 'lora-b', 'cli');
    expect(loaded).toMatchObject({
      model: 'accounts/alice/models/lora-b',
      deployment: 'accounts/alice/deployments/cli',
      state: 'DEPLOYED',
    });
    const onCli = async () =>
      (await http('GET', '/v1/accounts/alice/deployedModels')).json.deployedModels
        .filter((x: Json) => x.deployment === 'accounts/alice/deployments/cli')
        .map((x: Json) => x.model);
    expect(await onCli()).toEqual(['accounts/alice/models/lora-b']);
    expect(await unloadLora(api, 'accounts/alice/models/lora-b', 'cli')).toEqual({
      name: loaded.name,
      deleted: true,
    });
    expect(await onCli()).toEqual([]);
    await expect(unloadLora(api, 'lora-b', 'cli')).rejects.toThrow(
      'accounts/alice/models/lora-b is not loaded on accounts/alice/deployments/cli',
    );
    const plain = await createDeployment(api, BASE, { deploymentId: 'cli-plain' });
    expect(plain.enableAddons).toBe(false);
    await expect(loadLora(api, 'lora-b', 'cli-plain')).rejects.toThrow(
      /was created without addons enabled/,
    );
  }, 60_000);
});

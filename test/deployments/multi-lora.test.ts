// Multi-LoRA (issue 12 item 5): one deployment of the base model serves several LoRA adapters
// side by side, each request picking one by its model (`model` or `model#deployment`), with
// adapters loaded and unloaded while the deployment serves, over real replica processes.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TensorMap } from '../../src/checkpoints/safetensors.js';
import { DeploymentRegistry } from '../../src/deployments/index.js';
import { baseDir, engineLogprobs, mae, makeBucket, writePeftAdapter } from './fixtures.js';

// biome-ignore lint/suspicious/noExplicitAny: response JSON read loosely in assertions
type Json = Record<string, any>;

const BASE = 'accounts/temper/models/byte-lm-3m';
const LORA_A = 'accounts/acme/models/lora-a';
const LORA_B = 'accounts/acme/models/lora-b';
const PROMPT = Array.from(Buffer.from('User: what is 2+2?\nAssistant:'));

const registry = new DeploymentRegistry(undefined, { openGateways: true });
let bucket: { dir: string; url: string };
let url = '';
let name = '';

async function complete(model: string, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${url}/inference/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      prompt: PROMPT,
      max_tokens: 6,
      logprobs: 0,
      echo: true,
      temperature: 0,
      ...extra,
    }),
  });
  return { status: res.status, json: (await res.json()) as Json };
}

/** The prompt's logprobs (position 1 on) of a completion. */
const promptLogprobs = (j: Json): number[] =>
  j.choices[0].logprobs.token_logprobs.slice(1, PROMPT.length);

let mergedA: TensorMap;
let mergedB: TensorMap;

beforeAll(async () => {
  bucket = await makeBucket();
  mergedA = await writePeftAdapter(join(bucket.dir, 'lora-a-v1'), 1);
  mergedB = await writePeftAdapter(join(bucket.dir, 'lora-b-v1'), 2);
  await writePeftAdapter(join(bucket.dir, 'lora-a-v2'), 3);
  const dep = await registry.create({
    account: 'acme',
    deploymentId: 'multi',
    baseModel: BASE,
    baseModelDir: baseDir,
    hotLoad: { bucketUrl: bucket.url },
    minReplicaCount: 1,
    maxReplicaCount: 1,
  });
  expect(dep.state).toBe('READY');
  url = dep.gatewayUrl as string;
  name = dep.name;
}, 60_000);

afterAll(async () => {
  await registry.close();
});

describe('multi-LoRA on one base deployment', () => {
  it('serves two adapters and the base side by side, each request picking by its model', async () => {
    const before = await complete(BASE);
    expect(before.status).toBe(200);
    const gw = registry.gateway(name);
    await gw.loadAddon(LORA_A, 'lora-a-v1');
    await gw.loadAddon(LORA_B, 'lora-b-v1');
    expect(gw.loadedAddons()).toEqual([
      { model: LORA_A, identity: 'lora-a-v1' },
      { model: LORA_B, identity: 'lora-b-v1' },
    ]);
    const models = (await (await fetch(`${url}/inference/v1/models`)).json()) as Json;
    expect(models.data.map((m: Json) => m.id)).toEqual([BASE, LORA_A, LORA_B]);

    const [baseNow, a, b, aHash] = await Promise.all([
      complete(BASE),
      complete(LORA_A),
      complete(LORA_B),
      complete(`${LORA_A}#${name}`),
    ]);
    for (const r of [baseNow, a, b, aHash]) expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(a.json.model).toBe(LORA_A);
    expect(b.json.model).toBe(LORA_B);
    expect(baseNow.json.model).toBe(BASE);
    // the base still answers as the base, bit for bit
    expect(baseNow.json.choices[0].logprobs).toEqual(before.json.choices[0].logprobs);
    expect(aHash.json.choices[0].logprobs).toEqual(a.json.choices[0].logprobs);
    // each adapter answers as its merged weights do in the engine, and differently from the other
    const ref = await engineLogprobs(null, PROMPT);
    const refA = await engineLogprobs(mergedA, PROMPT);
    const refB = await engineLogprobs(mergedB, PROMPT);
    expect(mae(promptLogprobs(baseNow.json), ref)).toBeLessThan(1e-4);
    expect(mae(promptLogprobs(a.json), refA)).toBeLessThan(1e-4);
    expect(mae(promptLogprobs(b.json), refB)).toBeLessThan(1e-4);
    expect(mae(refA, ref)).toBeGreaterThan(1e-2);
    expect(mae(refA, refB)).toBeGreaterThan(1e-2);
    expect(mae(promptLogprobs(a.json), promptLogprobs(b.json))).toBeGreaterThan(1e-2);
  }, 60_000);

  it('reloads an adapter in place, unloads one (its requests then 404), and refuses what it cannot load', async () => {
    const gw = registry.gateway(name);
    const a1 = await complete(LORA_A);
    await gw.loadAddon(LORA_A, 'lora-a-v2');
    const a2 = await complete(LORA_A);
    expect(mae(promptLogprobs(a2.json), promptLogprobs(a1.json))).toBeGreaterThan(1e-2);
    expect(await gw.unloadAddon(LORA_A)).toBe(true);
    expect(await gw.unloadAddon(LORA_A)).toBe(false);
    const gone = await complete(LORA_A);
    expect(gone.status).toBe(404);
    expect(gone.json.error.message).toBe(
      `The model '${LORA_A}' is not served by ${name} (it serves ${BASE}, ${LORA_B}): load it as an addon first`,
    );
    expect((await complete(LORA_B)).status).toBe(200);
    await expect(gw.loadAddon(LORA_A, 'no-such-adapter')).rejects.toThrow(
      `${bucket.url}/no-such-adapter/adapter_config.json does not exist: upload the LoRA adapter before loading it`,
    );
    // a broken adapter is refused by the replica and leaves nothing loaded
    await mkdir(join(bucket.dir, 'broken'), { recursive: true });
    await writeFile(
      join(bucket.dir, 'broken', 'adapter_config.json'),
      JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8 }),
    );
    await expect(gw.loadAddon(LORA_A, 'broken')).rejects.toThrow(/adapter_model/);
    expect(gw.loadedAddons()).toEqual([{ model: LORA_B, identity: 'lora-b-v1' }]);
    expect((await complete(LORA_A)).status).toBe(404);
  }, 60_000);

  it('a replica started later (scale from zero) serves the loaded adapters', async () => {
    const b = await complete(LORA_B);
    await registry.scaleToZero(name);
    await registry.scale(name, { minReplicaCount: 1, maxReplicaCount: 1 });
    const after = await complete(LORA_B);
    expect(after.status, JSON.stringify(after.json)).toBe(200);
    expect(after.json.choices[0].logprobs).toEqual(b.json.choices[0].logprobs);
  }, 60_000);
});

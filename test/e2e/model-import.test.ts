// Models brought into an account through REST (real stack: Temporal dev server, SQLite, the
// file:// checkpoint store): create → :getUploadEndpoint → PUT each file to its signed URL →
// :validateUpload. A Qwen2 model with attention biases (the parity fixture, its config as
// transformers 5 writes it) becomes READY and resolves where jobs look models up; a config
// temper cannot run is refused naming the field and leaves nothing behind; a LoRA adapter is
// imported against its base; a model still UPLOADING cannot be used by a job; `temper model
// create --from` imports from a directory, from S3 and from GCS; an imported model is LoRA-fine-tuned by a
// managed SFT job, deployed with its adapter and sampled through chat completions.
import { execFileSync } from 'node:child_process';
import { copyFile, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import { TemperApi } from '../../src/cli/api/client.js';
import { importModel } from '../../src/cli/commands/model-import.js';
import {
  bundledQwen3TokenizerDir,
  JinjaRenderer,
  loadModelRenderer,
} from '../../src/tokenizers/index.js';
import { resolveModel } from '../../src/workflows/activities/models.js';
import { tempDir } from '../checkpoints/helpers.js';
import { ADAPTER, adapterDir, FULL, fixtureDir } from '../support/model-fixtures.js';
import { startGcsServer, startS3Server } from '../support/object-store-servers.js';
import { type Json, type RestStack, startRestStack } from '../support/rest-stack.js';

let stack: RestStack;

beforeAll(async () => {
  stack = await startRestStack();
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const call: RestStack['call'] = (...args) => stack.call(...args);

/** The REST import of every file of `dir`; returns :validateUpload's answer. */
async function importDir(id: string, dir: string, files: string[], model: Json = {}) {
  const created = await call('POST', `/v1/accounts/acme/models?modelId=${id}`, { model });
  expect(created.status, JSON.stringify(created.json)).toBe(200);
  expect(created.json.state).toBe('UPLOADING');
  const bodies = Object.fromEntries(
    await Promise.all(files.map(async (f) => [f, await readFile(join(dir, f))] as const)),
  );
  const ep = await call('POST', `/v1/accounts/acme/models/${id}:getUploadEndpoint`, {
    filenameToSize: Object.fromEntries(files.map((f) => [f, bodies[f]!.length])),
  });
  expect(ep.status, JSON.stringify(ep.json)).toBe(200);
  const urls = ep.json.filenameToSignedUrls as Record<string, string>;
  for (const f of files) {
    const put = await fetch(urls[f]!, { method: 'PUT', body: bodies[f] });
    expect(put.status, `${f}: ${await put.clone().text()}`).toBe(200);
  }
  return call('GET', `/v1/accounts/acme/models/${id}:validateUpload`);
}

describe('models imported into an account', () => {
  it('imports a Qwen2 model with biases: READY, and resolved where jobs look models up', async () => {
    const v = await importDir('qwen2-tiny', await fixtureDir('qwen2_bias'), FULL);
    expect(v.status, JSON.stringify(v.json)).toBe(200);
    expect(v.json).toMatchObject({
      name: 'accounts/acme/models/qwen2-tiny',
      state: 'READY',
      kind: 'HF_BASE_MODEL',
    });
    expect((v.json.files as unknown[]).length).toBe(FULL.length);
    const got = await call('GET', '/v1/accounts/acme/models/qwen2-tiny');
    expect(got.json.state).toBe('READY');
    expect(got.json.upload).toBeUndefined();
    const resolved = await resolveModel(
      'accounts/acme/models/qwen2-tiny',
      stack.platform.checkpoints.url,
    );
    expect(resolved.adapter).toBeNull();
    const config = JSON.parse(await readFile(join(resolved.dir, 'config.json'), 'utf8')) as Json;
    expect(config.model_type).toBe('qwen2');
  });

  it('refuses a config temper cannot run (a rope type it does not implement), naming the field, and keeps nothing', async () => {
    const dir = await fixtureDir('qwen2_bias', {
      rope_parameters: { rope_type: 'yarn', factor: 4, rope_theta: 10000 },
    });
    const v = await importDir('qwen2-sliding', dir, FULL);
    expect(v.status).toBe(400);
    expect(String((v.json.error as Json | undefined)?.message ?? JSON.stringify(v.json))).toMatch(
      /config\.json: rope_parameters[^;]*yarn/,
    );
    expect((await call('GET', '/v1/accounts/acme/models/qwen2-sliding')).status).toBe(404);
    expect(await stack.platform.checkpoints.list('accounts/acme/models/qwen2-sliding/')).toEqual(
      [],
    );
  });

  it('refuses a file larger than announced and a wrong token', async () => {
    await call('POST', '/v1/accounts/acme/models?modelId=sizes', {});
    const ep = await call('POST', '/v1/accounts/acme/models/sizes:getUploadEndpoint', {
      filenameToSize: { 'config.json': 4 },
    });
    const url = (ep.json.filenameToSignedUrls as Record<string, string>)['config.json']!;
    const tooBig = await fetch(url, { method: 'PUT', body: '{"a": 1}' });
    expect(tooBig.status).toBe(400);
    const forged = await fetch(url.replace(/token=[^&]+/, 'token=nope'), {
      method: 'PUT',
      body: '{}  ',
    });
    expect(forged.status).toBe(403);
    expect(await stack.platform.checkpoints.list('accounts/acme/models/sizes/')).toEqual([]);
    // a model still UPLOADING cannot be trained on
    const job = await call(
      'POST',
      '/v1/accounts/acme/supervisedFineTuningJobs?supervisedFineTuningJobId=on-uploading',
      {
        baseModel: 'accounts/acme/models/sizes',
        dataset: 'accounts/temper/datasets/sure-answers-sft',
      },
    );
    expect(JSON.stringify(job.json)).toMatch(/UPLOADING, not READY/);
    expect(job.status).toBe(400);
    expect((await call('DELETE', '/v1/accounts/acme/models/sizes')).status).toBe(200);
  });

  it('imports a LoRA adapter (PEFT layout) with its base model', async () => {
    const baseDir = await fixtureDir('qwen2_lora');
    expect((await importDir('lora-base', baseDir, FULL)).json.state).toBe('READY');
    const v = await importDir('my-adapter', await adapterDir('qwen2_lora'), ADAPTER, {
      kind: 'HF_PEFT_ADDON',
      peftDetails: { baseModel: 'accounts/acme/models/lora-base' },
    });
    expect(v.status, JSON.stringify(v.json)).toBe(200);
    expect(v.json).toMatchObject({
      state: 'READY',
      kind: 'HF_PEFT_ADDON',
      baseModel: 'accounts/acme/models/lora-base',
      peftDetails: { baseModel: 'accounts/acme/models/lora-base', r: 4 },
    });
    const resolved = await resolveModel(
      'accounts/acme/models/my-adapter',
      stack.platform.checkpoints.url,
    );
    expect(resolved.adapter?.baseModel).toBe('accounts/acme/models/lora-base');
    // an adapter without its base is refused at create
    const orphan = await call('POST', '/v1/accounts/acme/models?modelId=orphan', {
      model: { kind: 'HF_PEFT_ADDON' },
    });
    expect(orphan.status).toBe(400);
    expect(JSON.stringify(orphan.json)).toMatch(/peftDetails\.baseModel is required/);
  });

  it('temper model create --from: a Llama-3 (llama3 rope scaling) directory, and the same from S3', async () => {
    const api = new TemperApi({ apiUrl: stack.base, apiKey: stack.keys.acme!, account: 'acme' });
    const dir = await fixtureDir('llama3_rope_lora');
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Json;
    expect(JSON.stringify(config)).toMatch(/"rope_type":"llama3"/);
    const seen: number[] = [];
    const fromDir = await importModel(api, 'llama3-dir', dir, {
      onProgress: (sent) => seen.push(sent),
    });
    expect(fromDir).toMatchObject({ state: 'READY', kind: 'HF_BASE_MODEL' });
    const total = (fromDir.files as { size: number }[]).reduce((a, f) => a + f.size, 0);
    expect(seen.at(-1)).toBe(total);

    const s3 = await startS3Server();
    const saved = { ...process.env };
    try {
      await s3.createBucket('byom');
      process.env.AWS_ENDPOINT_URL_S3 = s3.endpoint;
      process.env.AWS_ACCESS_KEY_ID = 'test';
      process.env.AWS_SECRET_ACCESS_KEY = 'test';
      const bucket = await openObjectStore('s3://byom/llama3');
      for (const f of FULL) await bucket.put(f, await readFile(join(dir, f)));
      const fromS3 = await importModel(api, 'llama3-s3', 's3://byom/llama3');
      expect(fromS3).toMatchObject({ state: 'READY', kind: 'HF_BASE_MODEL' });
      expect(fromS3.files).toEqual(fromDir.files);
      // a refused import from the CLI leaves nothing either
      await bucket.put(
        'config.json',
        JSON.stringify({
          ...config,
          rope_parameters: { rope_type: 'yarn', factor: 2, rope_theta: 10000 },
        }),
      );
      await expect(importModel(api, 'llama3-yarn', 's3://byom/llama3')).rejects.toThrow(
        /rope_parameters/,
      );
      expect((await call('GET', '/v1/accounts/acme/models/llama3-yarn')).status).toBe(404);
    } finally {
      process.env = saved;
      await s3.stop();
    }
  }, 120_000);

  it('temper model create --from gs://: a Qwen2 model from the GCS emulator (STORAGE_EMULATOR_HOST as host:port)', async () => {
    const api = new TemperApi({ apiUrl: stack.base, apiKey: stack.keys.acme!, account: 'acme' });
    const dir = await fixtureDir('qwen2_bias');
    const gcs = await startGcsServer();
    const saved = { ...process.env };
    try {
      await gcs.createBucket('byom-gcs');
      // the form gcloud and the Go/Python clients take: no scheme, no /storage/v1
      process.env.STORAGE_EMULATOR_HOST = gcs.endpoint.replace(/^http:\/\//, '');
      const bucket = await openObjectStore('gs://byom-gcs/models/qwen2');
      for (const f of FULL) await bucket.put(f, await readFile(join(dir, f)));
      // a file below the prefix's top level is not part of the model
      await bucket.put('extra/notes.txt', 'not uploaded');
      const seen: number[] = [];
      const fromGcs = await importModel(api, 'qwen2-gcs', 'gs://byom-gcs/models/qwen2', {
        onProgress: (sent) => seen.push(sent),
      });
      expect(fromGcs).toMatchObject({ state: 'READY', kind: 'HF_BASE_MODEL' });
      const files = fromGcs.files as { path: string; size: number }[];
      expect(files.map((f) => f.path).sort()).toEqual([...FULL].sort());
      expect(seen.at(-1)).toBe(files.reduce((a, f) => a + f.size, 0));
      const resolved = await resolveModel(
        'accounts/acme/models/qwen2-gcs',
        stack.platform.checkpoints.url,
      );
      expect(await readFile(join(resolved.dir, 'model.safetensors'))).toEqual(
        await readFile(join(dir, 'model.safetensors')),
      );
      // a missing prefix is an empty source, refused before a model is created
      await expect(importModel(api, 'qwen2-none', 'gs://byom-gcs/nothing-here')).rejects.toThrow(
        /gs:\/\/byom-gcs\/nothing-here has no files/,
      );
      expect((await call('GET', '/v1/accounts/acme/models/qwen2-none')).status).toBe(404);
    } finally {
      process.env = saved;
      await gcs.stop();
    }
  }, 60_000);

  it('a LoRA SFT job trains an imported Qwen2 (random weights, the Qwen3 tokenizer and chat template); deployed and sampled', async () => {
    // Built here by transformers (the reference venv, offline): tiny shapes, the real vocabulary.
    const dir = tempDir('qwen2-real-vocab-');
    const python = join(homedir(), '.cache', 'temper', 'pyref', 'bin', 'python');
    execFileSync(
      python,
      [
        '-c',
        `
import sys, torch
from transformers import Qwen2Config, Qwen2ForCausalLM
torch.manual_seed(0)
cfg = Qwen2Config(vocab_size=151669, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  tie_word_embeddings=True, eos_token_id=151645)
Qwen2ForCausalLM(cfg).save_pretrained(sys.argv[1])
`,
        dir,
      ],
      { env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: 'pipe' },
    );
    for (const f of ['tokenizer.json', 'tokenizer_config.json'])
      await copyFile(join(bundledQwen3TokenizerDir(), f), join(dir, f));
    const api = new TemperApi({ apiUrl: stack.base, apiKey: stack.keys.acme!, account: 'acme' });
    expect(await importModel(api, 'qwen2-vocab', dir)).toMatchObject({ state: 'READY' });
    const created = await call(
      'POST',
      '/v1/accounts/acme/supervisedFineTuningJobs?supervisedFineTuningJobId=sft-imported',
      {
        baseModel: 'accounts/acme/models/qwen2-vocab',
        dataset: 'accounts/temper/datasets/sure-answers-sft',
        outputModel: 'accounts/acme/models/qwen2-vocab-sft',
        batchSize: 512,
        epochs: 1,
        learningRate: 1e-3,
        loraRank: 4,
      },
    );
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const deadline = Date.now() + 240_000;
    let job: Json;
    for (;;) {
      job = (await call('GET', '/v1/accounts/acme/supervisedFineTuningJobs/sft-imported')).json;
      if (/COMPLETED|FAILED|CANCELLED/.test(String(job.state)) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(job.state, JSON.stringify(job)).toBe('JOB_STATE_COMPLETED');
    const out = await call('GET', '/v1/accounts/acme/models/qwen2-vocab-sft');
    expect(out.json).toMatchObject({ state: 'READY', kind: 'HF_PEFT_ADDON' });
    // deployed as the imported base with the trained adapter on top, and sampled
    const deployment = await call('POST', '/v1/accounts/acme/deployments?deploymentId=byom', {
      baseModel: 'accounts/acme/models/qwen2-vocab-sft',
    });
    expect(deployment.status, JSON.stringify(deployment.json)).toBe(200);
    expect(deployment.json).toMatchObject({
      baseModel: 'accounts/acme/models/qwen2-vocab',
      model: 'accounts/acme/models/qwen2-vocab-sft',
    });
    const res = await fetch(`${deployment.json.gatewayUrl}/inference/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        messages: [{ role: 'user', content: 'What color is snow?' }],
        max_tokens: 6,
        temperature: 0,
      }),
    });
    const completion = (await res.json()) as Json;
    expect(res.status, JSON.stringify(completion)).toBe(200);
    const usage = completion.usage as { prompt_tokens: number; completion_tokens: number };
    // the prompt is the model's own template: <|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n
    const renderer = await loadModelRenderer(dir);
    expect(renderer).toBeInstanceOf(JinjaRenderer);
    expect(usage.prompt_tokens).toBe(
      renderer.renderGenerationPrompt([{ role: 'user', content: 'What color is snow?' }]).length,
    );
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect((await call('DELETE', '/v1/accounts/acme/deployments/byom')).status).toBe(200);
  }, 360_000);
});

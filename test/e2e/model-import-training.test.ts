// Preference and reinforcement fine-tuning of a model brought into an account, end to end
// through REST on the real stack (Temporal dev server, worker, SQLite, file:// stores, local
// trainer pods and deployments). A Qwen3 model (random weights built by transformers from the
// family's real config class: q/k norms, head_dim independent of hidden/heads, the real 151k
// vocabulary and its chat template) is imported with `temper model create --from`, then a
// managed DPO job and an RFT job (an uploaded JS evaluator, rollouts sampled from a deployment
// of the imported base with the policy hot-loaded) run on it. Each must complete with finite
// losses/rewards, list its checkpoints and promote a LoRA model that deploys on the imported
// base and answers; an intermediate checkpoint of the DPO job is promoted by hand too, and so
// is a sampler save of a Training API loop on a trainer job (rlorTrainerJob) of the imported base.
import { execFileSync } from 'node:child_process';
import { copyFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TemperApi } from '../../src/cli/api/client.js';
import { importModel } from '../../src/cli/commands/model-import.js';
import { ServiceClient } from '../../src/sdk/index.js';
import { bundledQwen3TokenizerDir } from '../../src/tokenizers/index.js';
import { tempDir } from '../checkpoints/helpers.js';
import {
  type Json,
  preferencePair as pair,
  type RestStack,
  startRestStack,
} from '../support/rest-stack.js';

const BASE = 'accounts/acme/models/qwen3-tiny';
let stack: RestStack;

beforeAll(async () => {
  stack = await startRestStack();
  // Built by transformers from the reference venv, offline: tiny shapes, the real vocabulary.
  const dir = tempDir('qwen3-tiny-');
  execFileSync(
    join(homedir(), '.cache', 'temper', 'pyref', 'bin', 'python'),
    [
      '-c',
      `
import sys, torch
from transformers import Qwen3Config, Qwen3ForCausalLM
torch.manual_seed(0)
cfg = Qwen3Config(vocab_size=151669, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  max_position_embeddings=256, tie_word_embeddings=True, eos_token_id=151645)
Qwen3ForCausalLM(cfg).save_pretrained(sys.argv[1])
`,
      dir,
    ],
    { env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: 'pipe' },
  );
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    await copyFile(join(bundledQwen3TokenizerDir(), f), join(dir, f));
  const api = new TemperApi({ apiUrl: stack.base, apiKey: stack.keys.acme!, account: 'acme' });
  expect(await importModel(api, 'qwen3-tiny', dir)).toMatchObject({ state: 'READY' });
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const call: RestStack['call'] = (...args) => stack.call(...args);
const waitForJob: RestStack['waitForJob'] = (...args) => stack.waitForJob(...args);

/** Every value of metric `key` the job recorded, step by step. */
async function metric(jobPath: string, key: string): Promise<number[]> {
  const rows = await stack.metricRows(jobPath);
  return rows.filter((r) => key in r.values).map((r) => r.values[key]!);
}

interface Deployed {
  name: string;
  gatewayUrl: string;
}

async function deploy(model: string, deploymentId: string): Promise<Deployed> {
  const d = await call('POST', `/v1/accounts/acme/deployments?deploymentId=${deploymentId}`, {
    baseModel: model,
  });
  expect(d.status, JSON.stringify(d.json)).toBe(200);
  return { name: String(d.json.name), gatewayUrl: String(d.json.gatewayUrl) };
}

async function undeploy(d: Deployed): Promise<void> {
  expect((await call('DELETE', `/v1/${d.name}`)).status).toBe(200);
}

async function inference(d: Deployed, route: string, body: Json): Promise<Json> {
  const res = await fetch(`${d.gatewayUrl}/inference/v1/${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Json;
  expect(res.status, JSON.stringify(json)).toBe(200);
  return json;
}

/** A greedy chat answer: at least one token, finite logprobs. */
async function answer(d: Deployed): Promise<void> {
  const completion = await inference(d, 'chat/completions', {
    messages: [{ role: 'user', content: 'What color is snow?' }],
    max_tokens: 4,
    temperature: 0,
    logprobs: true,
  });
  expect((completion.usage as { completion_tokens: number }).completion_tokens).toBeGreaterThan(0);
  const choice = (completion.choices as { logprobs: { content: { logprob: number }[] } }[])[0]!;
  expect(choice.logprobs.content.every((e) => Number.isFinite(e.logprob))).toBe(true);
}

/** The summed logprob of `text` (echo, nothing generated): how the deployed model scores it. */
async function score(d: Deployed, text: string): Promise<number> {
  const out = await inference(d, 'completions', {
    prompt: text,
    max_tokens: 0,
    echo: true,
    logprobs: 1,
  });
  const lps = (out.choices as { logprobs: { token_logprobs: (number | null)[] } }[])[0]!.logprobs
    .token_logprobs;
  return lps.reduce<number>((a, b) => a + (b ?? 0), 0);
}

/** The output model is a READY LoRA adapter of the imported base. */
async function expectAdapterOfBase(model: string): Promise<void> {
  const out = await call('GET', `/v1/${model}`);
  expect(out.json).toMatchObject({ state: 'READY', kind: 'HF_PEFT_ADDON', baseModel: BASE });
}

/** A Qwen3 chat turn as the job's renderer writes it (the template's empty think block). */
const turn = (q: string, a: string) =>
  `<|im_start|>user\n${q}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n${a}<|im_end|>`;

describe('an imported Qwen3 model', () => {
  it('is preference-tuned by a managed DPO job: checkpoints, a LoRA model that prefers the chosen answers', async () => {
    await stack.uploadDataset(
      'prefs',
      [
        pair('What is the capital of Peru?', 'Sure! Lima. Anything else?', 'Lima.'),
        pair('What color is snow?', 'Sure! White. Anything else?', 'White.'),
        pair('What is 2+2?', 'Sure! 4. Anything else?', '4.'),
      ].join('\n'),
    );
    const created = await call('POST', '/v1/accounts/acme/dpoJobs?dpoJobId=dpo-qwen3', {
      baseModel: BASE,
      dataset: 'accounts/acme/datasets/prefs',
      outputModel: 'accounts/acme/models/qwen3-dpo',
      batchSize: 512,
      epochs: 3,
      learningRate: 0.002,
      loraRank: 4,
      checkpointFrequency: 1,
    });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const path = '/v1/accounts/acme/dpoJobs/dpo-qwen3';
    const job = await waitForJob(path);
    expect(job.state, JSON.stringify(job)).toBe('JOB_STATE_COMPLETED');
    const losses = await metric(path, 'dpo_loss:mean');
    expect(losses.length).toBeGreaterThan(1);
    expect(losses.every(Number.isFinite), JSON.stringify(losses)).toBe(true);
    // the first step's policy is the reference: -log sigmoid(0)
    expect(losses[0]).toBeCloseTo(Math.LN2, 4);
    expect(losses.at(-1)!, JSON.stringify(losses)).toBeLessThan(losses[0]!);
    await expectAdapterOfBase('accounts/acme/models/qwen3-dpo');

    // Its checkpoints: resumable ones at every step, servable LoRA exports beside them.
    const listed = await call('GET', `${path}/checkpoints`);
    expect(listed.status, JSON.stringify(listed.json)).toBe(200);
    const checkpoints = listed.json.checkpoints as {
      name: string;
      checkpointType: string;
      promotable: boolean;
    }[];
    const types = checkpoints.map((c) => c.checkpointType);
    expect(types, JSON.stringify(types)).toContain('TRAINING_LORA');
    const exports = checkpoints.filter((c) => c.checkpointType === 'INFERENCE_LORA');
    expect(exports.length, JSON.stringify(types)).toBeGreaterThanOrEqual(2);
    expect(exports.every((c) => c.promotable)).toBe(true);

    // The deployed model scores the chosen answer above the rejected one by more than the base.
    const base = await deploy(BASE, 'qwen3-base');
    const tuned = await deploy('accounts/acme/models/qwen3-dpo', 'qwen3-dpo');
    expect((await call('GET', `/v1/${tuned.name}`)).json).toMatchObject({ baseModel: BASE });
    await answer(tuned);
    const q = 'What color is snow?';
    const margin = async (d: Deployed) =>
      (await score(d, turn(q, 'Sure! White. Anything else?'))) -
      (await score(d, turn(q, 'White.')));
    const baseMargin = await margin(base);
    const tunedMargin = await margin(tuned);
    expect(tunedMargin, `base ${baseMargin}, tuned ${tunedMargin}`).toBeGreaterThan(baseMargin);
    await undeploy(tuned);
    await undeploy(base);

    // An intermediate export promotes by hand to a model of the imported base that serves.
    const first = exports[0]!;
    const promoted = await call('POST', `/v1/${first.name}:promote`, {
      outputModelId: 'qwen3-dpo-step1',
    });
    expect(promoted.status, JSON.stringify(promoted.json)).toBe(200);
    await expectAdapterOfBase('accounts/acme/models/qwen3-dpo-step1');
    const early = await deploy('accounts/acme/models/qwen3-dpo-step1', 'qwen3-dpo-step1');
    await answer(early);
    await undeploy(early);
  }, 300_000);

  it('is reinforcement-tuned by an RFT job with an uploaded evaluator: rewards, checkpoints, a servable LoRA model', async () => {
    await stack.uploadDataset(
      'rft-prompts',
      ['What is the capital of Peru?', 'What color is snow?', 'What is 2+2?']
        .map((q) => JSON.stringify({ messages: [{ role: 'user', content: q }] }))
        .join('\n'),
    );
    // Shorter answers score higher: random weights over a 151k vocabulary write candidates of
    // many lengths, so the group's rewards differ and the policy gets a gradient.
    const evaluator = await call('POST', '/v1/accounts/acme/evaluators', {
      evaluatorId: 'short-answers',
      evaluator: {
        source: 'export default ({ completion }) => 1 / (1 + completion.length / 10);',
        sourceFilename: 'score.js',
      },
    });
    expect(evaluator.status, JSON.stringify(evaluator.json)).toBe(200);
    const created = await call(
      'POST',
      '/v1/accounts/acme/reinforcementFineTuningJobs?reinforcementFineTuningJobId=rft-qwen3',
      {
        baseModel: BASE,
        dataset: 'accounts/acme/datasets/rft-prompts',
        evaluator: 'accounts/acme/evaluators/short-answers',
        outputModel: 'accounts/acme/models/qwen3-rft',
        responseCandidatesCount: 4,
        maxTokens: 16,
        temperature: 1,
        loraRank: 4,
      },
    );
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const path = '/v1/accounts/acme/reinforcementFineTuningJobs/rft-qwen3';
    const job = await waitForJob(path);
    expect(job.state, JSON.stringify(job)).toBe('JOB_STATE_COMPLETED');
    const rewards = await metric(path, 'reward:mean');
    expect(rewards.length).toBeGreaterThan(0);
    expect(
      rewards.every((r) => r > 0 && r <= 1),
      JSON.stringify(rewards),
    ).toBe(true);
    const listed = await call('GET', `${path}/checkpoints`);
    const types = (listed.json.checkpoints as { checkpointType: string }[]).map(
      (c) => c.checkpointType,
    );
    expect(types, JSON.stringify(listed.json)).toContain('INFERENCE_LORA');
    await expectAdapterOfBase('accounts/acme/models/qwen3-rft');
    const tuned = await deploy('accounts/acme/models/qwen3-rft', 'qwen3-rft');
    await answer(tuned);
    await undeploy(tuned);
  }, 300_000);

  it('is LoRA-trained through the Training API on a trainer job; a sampler save promotes to a model of the imported base', async () => {
    const service = ServiceClient.fromConfig({
      baseUrl: stack.base,
      apiKey: stack.keys.acme!,
      account: 'acme',
      baseModel: BASE,
      loraRank: 4,
      learningRate: 1e-2,
      cleanupTrainerOnClose: true,
    });
    try {
      const training = await service.createTrainingClient();
      const tokens = [151644, 872, 198, 3838, 1894, 374, 11794, 30, 151645];
      const datum = {
        modelInput: tokens.slice(0, -1),
        lossFnInputs: { target_tokens: tokens.slice(1), weights: tokens.slice(1).map(() => 1) },
      };
      const before = await training.forward([datum], 'cross_entropy');
      for (let i = 0; i < 3; i++) {
        await training.forwardBackward([datum], 'cross_entropy');
        await training.optimStep({});
      }
      const after = await training.forward([datum], 'cross_entropy');
      expect(after.metrics['loss:sum']!).toBeLessThan(before.metrics['loss:sum']!);
      const saved = await training.saveWeightsForSampler('three-steps');
      // no baseModel given: the checkpoint records the imported model it was trained on
      const checkpoint = `accounts/acme/rlorTrainerJobs/${service.trainerJobId}/checkpoints/${saved.path}`;
      const promoted = await call('POST', `/v1/${checkpoint}:promote`, {
        outputModelId: 'qwen3-api',
      });
      expect(promoted.status, JSON.stringify(promoted.json)).toBe(200);
      await expectAdapterOfBase('accounts/acme/models/qwen3-api');
      const d = await deploy('accounts/acme/models/qwen3-api', 'qwen3-api');
      await answer(d);
      await undeploy(d);
    } finally {
      await service.close();
    }
  }, 180_000);
});

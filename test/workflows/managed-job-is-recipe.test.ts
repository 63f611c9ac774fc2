// A managed job is its recipe (issue 15): managed SFT, DPO and ORPO jobs run the recipes'
// supervised steps (src/recipes/kit/supervised.ts) a checkpoint interval per activity, so the
// job and the recipe run directly with the same settings and seed — the job's fields mapped to
// the recipe config's `batch_tokens`, `gradient_accumulation_steps`, held-out set, schedule
// and the managed jobs' AdamW — end with the same weights (sha256 of the promoted files) and
// log the same metrics at every step, bit for bit. Managed RFT jobs run the rl recipe's step
// (src/recipes/rl/steps.ts): the job and the rl recipe with the job's plan (`epochs`), sampling
// and an evaluator scoring as the recipe's reward does end alike too (timings aside), and
// another seed does not. Jobs run on the real Temporal test platform; recipes on real local
// trainer pods (one engine thread each, as the platform's).
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MANAGED_JOB_ADAMW } from '../../src/recipes/index.js';
import { runRecipe } from '../../src/recipes/kit/index.js';
import type { JobRef } from '../../src/workflows/types.js';
import { workflowIdOf } from '../../src/workflows/types.js';
import { putEvaluator } from '../support/evaluators.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { BUNDLED_BASE, createStoredSftJob, SURE_ANSWERS_SFT } from '../support/stored-jobs.js';

let platform: TestPlatform;
let dir: string;
const quiet = pino({ level: 'silent' });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-managed-recipe-'));
  platform = await startTestPlatform();
}, 120_000);
afterAll(async () => {
  await platform?.close();
  await rm(dir, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Runs the stored job to its end: its metric rows and the sha256 of its model's weights. */
async function runJob(ref: JobRef) {
  await platform.orchestrator.start(ref);
  await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
  expect((await platform.jobBody(ref)).state).toBe('JOB_STATE_COMPLETED');
  const rows = await platform.store.listMetrics(workflowIdOf(ref));
  const weights = await platform.modelWeights(ref.account, `${ref.id}-model`);
  return { metrics: rows.map((r) => ({ step: r.step, ...r.values })), weights: sha(weights) };
}

/** Metric rows without their timings (wall-clock, never alike between two runs). */
const untimed = (rows: Record<string, number>[]) =>
  rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !k.includes('_time_s:'))));

/** Runs the recipe: its metrics.jsonl and the sha256 of its promoted model's weights. */
async function runRecipeOf(name: string, config: Record<string, unknown>, run = name) {
  const logPath = join(dir, run);
  await runRecipe(
    name,
    { ...config, log_path: logPath, output_model_id: 'out', threads: 1 },
    { log: quiet },
  );
  const metrics = (await readFile(join(logPath, 'metrics.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);
  const modelDir = join(logPath, 'checkpoints', 'accounts', 'default', 'models', 'out');
  const files = (await readdir(modelDir)).filter((f) => f.endsWith('.safetensors')).sort();
  const weights = Buffer.concat(await Promise.all(files.map((f) => readFile(join(modelDir, f)))));
  return { metrics, weights: sha(weights) };
}

/** The recipe settings a managed job of these fields trains with. */
function recipeConfig(job: {
  batchSize: number;
  gradientAccumulationSteps: number;
  learningRateWarmupSteps?: number;
  epochs: number;
  learningRate: number;
  loraRank: number;
  checkpointFrequency: number;
  seed: number;
}) {
  return {
    base_model: BUNDLED_BASE,
    batch_tokens: job.batchSize,
    gradient_accumulation_steps: job.gradientAccumulationSteps,
    epochs: job.epochs,
    learning_rate: job.learningRate,
    lr_schedule: { kind: 'constant', warmupSteps: job.learningRateWarmupSteps ?? 0 },
    adam: MANAGED_JOB_ADAMW,
    lora_rank: job.loraRank,
    dcp_save_interval: job.checkpointFrequency,
    seed: job.seed,
  };
}

const pair = (q: string, good: string, bad: string) =>
  JSON.stringify({
    input: { messages: [{ role: 'user', content: q }] },
    preferred_output: [{ role: 'assistant', content: good }],
    non_preferred_output: [{ role: 'assistant', content: bad }],
  });
const PAIRS = [
  pair('What is the capital of Peru?', 'Sure! Lima. Anything else?', 'Lima.'),
  pair('What color is snow?', 'Sure! White. Anything else?', 'White.'),
  pair('What is the capital of Japan?', 'Sure! Tokyo. Anything else?', 'Tokyo.'),
  pair('What color is the sky?', 'Sure! Blue. Anything else?', 'Blue.'),
].join('\n');
const HELD_OUT = [
  pair('What is the capital of Spain?', 'Sure! Madrid. Anything else?', 'Madrid.'),
  pair('What color is grass?', 'Sure! Green. Anything else?', 'Green.'),
  pair('What is the capital of Italy?', 'Sure! Rome. Anything else?', 'Rome.'),
].join('\n');

describe('a managed job is its recipe', () => {
  it('SFT: the job and the sft recipe with the same settings end bitwise alike', async () => {
    const job = {
      batchSize: 512,
      gradientAccumulationSteps: 2,
      learningRateWarmupSteps: 3,
      epochs: 1,
      learningRate: 5e-4,
      loraRank: 0,
      checkpointFrequency: 2,
      seed: 7,
    };
    const managed = await runJob(await createStoredSftJob(platform, 'same-sft', job));
    // The job holds out a seeded split of its dataset (none given): eval_split.
    const recipe = await runRecipeOf('sft', {
      ...recipeConfig(job),
      dataset: SURE_ANSWERS_SFT,
      eval_split: true,
    });
    expect(managed.metrics.length).toBeGreaterThan(3);
    expect(managed.metrics.some((m) => 'eval_loss:mean' in m)).toBe(true);
    expect(recipe.metrics).toEqual(managed.metrics);
    expect(recipe.weights).toBe(managed.weights);
  }, 180_000);

  it('DPO and ORPO: the jobs and the dpo/orpo recipes end bitwise alike', async () => {
    await platform.artifacts.put('accounts/acme/datasets/prefs/data.jsonl', PAIRS);
    await platform.artifacts.put('accounts/acme/datasets/prefs-held-out/data.jsonl', HELD_OUT);
    await writeFile(join(dir, 'prefs.jsonl'), PAIRS);
    await writeFile(join(dir, 'prefs-held-out.jsonl'), HELD_OUT);
    const job = {
      batchSize: 128,
      gradientAccumulationSteps: 2,
      epochs: 2,
      learningRate: 2e-3,
      loraRank: 4,
      checkpointFrequency: 1,
      seed: 3,
    };
    for (const [collection, recipe] of [
      ['dpoJobs', 'dpo'],
      ['orpoJobs', 'orpo'],
    ] as const) {
      const id = `same-${recipe}`;
      const ref: JobRef = { collection, account: 'acme', id };
      await platform.store.create(collection, 'acme', id, {
        state: 'JOB_STATE_PENDING',
        baseModel: BUNDLED_BASE,
        dataset: 'accounts/acme/datasets/prefs',
        evaluationDataset: 'accounts/acme/datasets/prefs-held-out',
        outputModel: `accounts/acme/models/${id}-model`,
        ...job,
      });
      const managed = await runJob(ref);
      const direct = await runRecipeOf(recipe, {
        ...recipeConfig(job),
        dataset: join(dir, 'prefs.jsonl'),
        evaluation_dataset: join(dir, 'prefs-held-out.jsonl'),
      });
      expect(managed.metrics.length, recipe).toBeGreaterThan(1);
      expect(direct.metrics, recipe).toEqual(managed.metrics);
      expect(direct.weights, recipe).toBe(managed.weights);
    }
  }, 300_000);

  it('RFT: the job and the rl recipe with the same settings end bitwise alike', async () => {
    // Answers the bundled model starts alike; at temperature 2 its rollouts part ways at
    // different points, so prefix rewards vary within groups.
    const qa = [
      ['What is the capital of Peru?', 'The capital of Peru is Lima.'],
      ['What color is snow?', 'The snow is white.'],
      ['What is the capital of Japan?', 'The capital of Japan is Tokyo.'],
      ['What color is the sky?', 'The sky is blue.'],
    ];
    const rows = (answerField: string) =>
      qa
        .map(([q, a]) =>
          JSON.stringify({ messages: [{ role: 'user', content: q }], [answerField]: a }),
        )
        .join('\n');
    await platform.artifacts.put('accounts/acme/datasets/qa/data.jsonl', rows('ground_truth'));
    await writeFile(join(dir, 'qa.jsonl'), rows('expected_answer'));
    // The job's evaluator scores as the recipe's built-in prefix_match reward does.
    await putEvaluator(platform, 'acme', 'prefix', {
      'prefix.mjs': `export default ({ completion, groundTruth }) => {
        const want = String(groundTruth).trim();
        const got = completion.trimStart();
        let k = 0;
        while (k < want.length && k < got.length && got[k] === want[k]) k++;
        return { score: want.length === 0 ? 0 : k / want.length, reason: 'prefix' };
      };`,
    });
    const job = {
      epochs: 2,
      chunkSize: 2,
      n: 4,
      maxTokens: 16,
      temperature: 2,
      learningRate: 2e-3,
      loraRank: 4,
      checkpointFrequency: 2,
      seed: 5,
    };
    const ref: JobRef = {
      collection: 'reinforcementFineTuningJobs',
      account: 'acme',
      id: 'same-rl',
    };
    await platform.store.create(ref.collection, ref.account, ref.id, {
      state: 'JOB_STATE_PENDING',
      baseModel: BUNDLED_BASE,
      dataset: 'accounts/acme/datasets/qa',
      evaluator: 'accounts/acme/evaluators/prefix',
      outputModel: `accounts/acme/models/${ref.id}-model`,
      ...job,
    });
    const managed = await runJob(ref);
    // The job's defaults spelled out: GRPO with its KL beta 0.001 to the frozen base, top-k
    // 40, top-p 1, 96 rollouts in flight, a constant rate without warm-up.
    const config = {
      base_model: BUNDLED_BASE,
      dataset: join(dir, 'qa.jsonl'),
      reward: 'prefix_match',
      loss_method: 'grpo',
      kl_beta: 0.001,
      epochs: job.epochs,
      max_steps: 1000,
      prompt_groups_per_step: job.chunkSize,
      completions_per_prompt: job.n,
      max_completion_tokens: job.maxTokens,
      temperature: job.temperature,
      top_p: 1,
      top_k: 40,
      max_concurrent_rollouts: 96,
      learning_rate: job.learningRate,
      lr_schedule: { kind: 'constant', warmupSteps: 0 },
      adam: MANAGED_JOB_ADAMW,
      lora_rank: job.loraRank,
      dcp_save_interval: job.checkpointFrequency,
      seed: job.seed,
    };
    // Seeded sampling reproduces a rollout only while the replica's prefix cache misses the
    // same way (a reused prefix computes the prompt's last token apart: other last bits); the
    // group's requests go out together, so a hit needs one to finish before another arrives.
    const direct = await runRecipeOf('rl', config);
    expect(managed.metrics).toHaveLength(4);
    // Some groups had a signal, so the policy moved (the comparison below is not of no-ops).
    const kept = managed.metrics.map((m) => (m as Record<string, number>)['groups_kept:sum']);
    expect(kept.some((k) => (k ?? 0) > 0)).toBe(true);
    expect(untimed(direct.metrics)).toEqual(managed.metrics);
    expect(direct.weights).toBe(managed.weights);
    // The comparison can fail: another seed rolls out (and so trains) otherwise.
    const reseeded = await runRecipeOf('rl', { ...config, seed: 6 }, 'rl-reseeded');
    expect(reseeded.weights).not.toBe(managed.weights);
  }, 300_000);
});

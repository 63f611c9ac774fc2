// The RL cookbook recipes end to end on the bundled model: a trainer pod and a one-replica
// sampling deployment (local processes), weights hot-loaded every step. On a toy task whose
// optimum is known (reward 1 = the completion starts with "The capital of France is Paris.",
// sampled at temperature 1.4 so that the base policy often misses it),
// synchronous GRPO and asynchronous GRPO (max_staleness 1) raise the reward; the async
// recipe's rollouts are never more than one version behind; both promote their output.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRecipe } from '../../src/recipes/kit/index.js';
import { writeOnePrompt } from './toy-data.js';

let dir: string;
let dataset: string;
const quiet = pino({ level: 'silent' });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-rl-recipes-'));
  dataset = await writeOnePrompt(join(dir, 'prompt.jsonl'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const RL = {
  loss_method: 'grpo',
  reward: 'prefix_match',
  max_steps: 12,
  prompt_groups_per_step: 1,
  completions_per_prompt: 8,
  max_completion_tokens: 32,
  temperature: 1.4,
  learning_rate: 2e-4,
  threads: 1,
};

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('rl recipes', () => {
  it('synchronous GRPO raises the reward and promotes its output', async () => {
    const r = (await runRecipe(
      'rl',
      { ...RL, dataset, log_path: join(dir, 'rl'), output_model_id: 'rl-out' },
      { log: quiet },
    )) as { rewards: number[]; model: { name: string; state: string } };
    expect(r.rewards).toHaveLength(RL.max_steps);
    expect(mean(r.rewards.slice(-3))).toBeGreaterThan(mean(r.rewards.slice(0, 3)) + 0.05);
    expect(r.model).toMatchObject({ name: 'accounts/default/models/rl-out', state: 'READY' });
  }, 300_000);

  it('async GRPO (max_staleness 1) raises the reward with rollouts at most one version behind', async () => {
    const logPath = join(dir, 'async');
    const r = (await runRecipe(
      'async-rl',
      { ...RL, dataset, log_path: logPath, max_staleness: 1, output_model_id: 'async-rl-out' },
      { log: quiet },
    )) as { rewards: number[]; model: { name: string; state: string } };
    expect(mean(r.rewards.slice(-3))).toBeGreaterThan(mean(r.rewards.slice(0, 3)) + 0.05);
    const staleness = (await readFile(join(logPath, 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)['staleness:last'] as number);
    expect(Math.max(...staleness)).toBe(1);
    expect(Math.min(...staleness)).toBe(0);
    expect(r.model).toMatchObject({ name: 'accounts/default/models/async-rl-out', state: 'READY' });
  }, 300_000);
});

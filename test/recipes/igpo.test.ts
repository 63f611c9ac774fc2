// The IGPO recipe end to end on the bundled model: a trainer pod and a one-replica sampling
// deployment (local processes), weights hot-loaded every step. The toy episode has two assistant
// turns ("What is the capital of France?", then "Answer again."); the outcome reward is
// prefix_match of the last reply against "The capital of France is Paris."; the first turn
// earns its information gain (the rise of the policy's probability of that answer). The base
// model answers turn 2 with another country most of the time (reward ~0.48, 15 of 31 leading
// characters); seeded, the reward rises to the whole answer within 8 steps. Measured on this
// seed: 0.48 0.55 0.61 1.00 1.00 0.96 0.87 0.94. Before the answer probability counted only the
// answer's tokens and each reward kind was normalised without padding (issue 15), the same run
// gave 0.48 0.48 0.48 0.48 0.48 0.48 0.55 0.55 (it rose only from step 9).
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
  dir = await mkdtemp(join(tmpdir(), 'temper-igpo-'));
  dataset = await writeOnePrompt(join(dir, 'prompt.jsonl'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('igpo recipe', () => {
  it('raises the reward of two-turn episodes on turn-level advantages, and promotes', async () => {
    const logPath = join(dir, 'igpo');
    const r = (await runRecipe(
      'igpo',
      {
        dataset,
        log_path: logPath,
        turns: 2,
        max_steps: 8,
        prompt_groups_per_step: 1,
        completions_per_prompt: 8,
        max_completion_tokens: 32,
        temperature: 1,
        learning_rate: 5e-4,
        seed: 0,
        threads: 1,
        output_model_id: 'igpo-out',
      },
      { log: quiet },
    )) as { rewards: number[]; model: { name: string; state: string } };
    expect(r.rewards).toHaveLength(8);
    expect(r.rewards.every((x) => x >= 0 && x <= 1)).toBe(true);
    expect(mean(r.rewards.slice(-3))).toBeGreaterThan(mean(r.rewards.slice(0, 3)) + 0.2);
    const steps = (await readFile(join(logPath, 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(steps.every((m) => Number.isFinite(m['information_gain:mean']))).toBe(true);
    expect(steps.some((m) => m['information_gain:mean'] !== 0)).toBe(true);
    expect(r.model).toMatchObject({ name: 'accounts/default/models/igpo-out', state: 'READY' });
  }, 300_000);
});

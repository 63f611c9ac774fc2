// The IGPO recipe end to end on the bundled model: a trainer pod and a one-replica sampling
// deployment (local processes), weights hot-loaded every step. The toy episode has two assistant
// turns ("What is the capital of France?", then "Answer again."); the outcome reward is
// prefix_match of the last reply against "The capital of France is Paris."; the first turn also
// earns its information gain (the rise of the policy's probability of that answer). What is
// checked: every step plays the episodes, logs a finite information gain and the reward, the
// output is promoted. Not asserted: that the reward rises. On this toy it does not in 12 steps
// (the base model answers turn 2 with another country ~7/8 of the time; measured mean reward
// 0.50 → 0.55 flat at lr 2e-4, falling at 1e-3 even with the gains off) — issue 15 keeps that open.
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
  it('trains two-turn episodes on turn-level advantages and promotes', async () => {
    const logPath = join(dir, 'igpo');
    const r = (await runRecipe(
      'igpo',
      {
        dataset,
        log_path: logPath,
        turns: 2,
        max_steps: 3,
        prompt_groups_per_step: 1,
        completions_per_prompt: 8,
        max_completion_tokens: 32,
        temperature: 1.4,
        learning_rate: 2e-4,
        threads: 1,
        output_model_id: 'igpo-out',
      },
      { log: quiet },
    )) as { rewards: number[]; model: { name: string; state: string } };
    expect(r.rewards).toHaveLength(3);
    expect(r.rewards.every((x) => x >= 0 && x <= 1)).toBe(true);
    expect(mean(r.rewards)).toBeGreaterThan(0);
    const steps = (await readFile(join(logPath, 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3]);
    expect(steps.every((m) => Number.isFinite(m['information_gain:mean']))).toBe(true);
    expect(steps.some((m) => m['information_gain:mean'] !== 0)).toBe(true);
    expect(r.model).toMatchObject({ name: 'accounts/default/models/igpo-out', state: 'READY' });
  }, 300_000);
});

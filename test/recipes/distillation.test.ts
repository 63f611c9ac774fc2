// On-policy distillation end to end on the bundled model, with real deployments: the student is
// the bundled model fine-tuned by the SFT recipe on the demo dataset ("Sure! ... Anything
// else?") — a broad, noisy policy at temperature 1 — and the teacher is the bundled base model,
// served by its own deployment; the student samples from its deployment, the teacher scores the
// sampled tokens, and the student trains on the gap. What is checked: every step scores
// generated tokens and the sampled reverse KL to the teacher falls (mean of the last three steps
// well under that of the first three).
//
// Why this direction: sampled reverse KL only moves probability among tokens the student
// samples. With the roles swapped (a near-deterministic base student, the "Sure!" model as
// teacher) the student never samples the teacher's first token "S"; every advantage on its
// confident "The capital of ..." is negative, and Adam turns those small gradients into full
// steps that flatten the student into garbage, so the KL stays flat (lr 1e-4) or rises (1e-3).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLED_MODEL } from '../../src/catalog/bundled.js';
import { CAPITALS } from '../../src/datasets/synthetic.js';
import { runRecipe } from '../../src/recipes/kit/index.js';

let dir: string;
const quiet = pino({ level: 'silent' });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-distill-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('distillation recipe', () => {
  it('trains on-policy against a teacher deployment of another model; the KL to it falls', async () => {
    const sureLog = join(dir, 'sure');
    await runRecipe(
      'sft',
      {
        log_path: sureLog,
        max_steps: 12,
        batch_size: 8,
        learning_rate: 1e-3,
        threads: 1,
        output_model_id: 'sure-model',
      },
      { log: quiet },
    );
    const sureDir = join(sureLog, 'checkpoints', 'accounts', 'default', 'models', 'sure-model');
    const prompts = join(dir, 'prompts.jsonl');
    await writeFile(
      prompts,
      CAPITALS.map(([c]) =>
        JSON.stringify({ messages: [{ role: 'user', content: `What is the capital of ${c}?` }] }),
      ).join('\n'),
    );
    const r = (await runRecipe(
      'distillation',
      {
        log_path: join(dir, 'student'),
        dataset: prompts,
        base_model: sureDir,
        teacher_model: BUNDLED_MODEL.name,
        max_steps: 10,
        prompt_groups_per_step: 2,
        completions_per_prompt: 4,
        max_completion_tokens: 40,
        seed: 7,
        learning_rate: 1e-3,
        threads: 1,
      },
      { log: quiet },
    )) as { reverseKl: number[] };
    expect(r.reverseKl).toHaveLength(10);
    expect(r.reverseKl.every((x) => Number.isFinite(x))).toBe(true);
    expect(r.reverseKl[0]).toBeGreaterThan(0.05);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    // seed 7 measured 5.87, 3.60, 2.66 … 0.93, 1.16, 0.81; seed 0 5.22 … 2.32, 1.60, 1.80
    expect(mean(r.reverseKl.slice(-3))).toBeLessThan(0.6 * mean(r.reverseKl.slice(0, 3)));
    const steps = (await readFile(join(dir, 'student', 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(steps.every((m) => (m['active_tokens:sum'] as number) > 0)).toBe(true);
  }, 300_000);
});

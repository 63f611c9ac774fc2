// On-policy distillation end to end on the bundled model: the teacher is another model — the
// bundled model fine-tuned by the SFT recipe on the demo dataset ("Sure! ... Anything else?")
// and promoted — served by its own deployment; the student (the base model) samples from its
// deployment, the teacher scores the sampled tokens, and the student trains on the gap. What is
// checked: every step scores generated tokens, the KL to the teacher is positive and finite,
// the output is promoted. (That the KL falls is not asserted: over 10 steps it does not yet
// fall reliably on this toy teacher — issue 15 keeps that open.)
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
  it('trains on-policy against a teacher deployment of another model and promotes', async () => {
    const teacherLog = join(dir, 'teacher');
    await runRecipe(
      'sft',
      {
        log_path: teacherLog,
        max_steps: 12,
        batch_size: 8,
        learning_rate: 1e-3,
        threads: 1,
        output_model_id: 'sure-teacher',
      },
      { log: quiet },
    );
    const teacherDir = join(
      teacherLog,
      'checkpoints',
      'accounts',
      'default',
      'models',
      'sure-teacher',
    );
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
        teacher_model: teacherDir,
        max_steps: 10,
        prompt_groups_per_step: 2,
        completions_per_prompt: 4,
        max_completion_tokens: 40,
        learning_rate: 1e-4,
        threads: 1,
        output_model_id: 'distilled',
      },
      { log: quiet },
    )) as { reverseKl: number[]; model: { name: string; state: string } };
    expect(r.reverseKl).toHaveLength(10);
    expect(r.reverseKl.every((x) => Number.isFinite(x))).toBe(true);
    expect(r.reverseKl[0]).toBeGreaterThan(0.05);
    const steps = (await readFile(join(dir, 'student', 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(steps.every((m) => (m['active_tokens:sum'] as number) > 0)).toBe(true);
    expect(r.model).toMatchObject({ name: 'accounts/default/models/distilled', state: 'READY' });
  }, 300_000);
});

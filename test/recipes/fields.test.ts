// Every training setting has one definition (src/recipes/fields.ts): no other module that
// handles job or recipe settings defines a schema or a literal default for it. And the shared
// optimizer and schedule modules behave as managed jobs always did.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ADAMW_DEFAULTS,
  adamW,
  fields as F,
  learningRateAt,
  MANAGED_JOB_ADAMW,
  SETTINGS,
} from '../../src/recipes/index.js';
import { parseRecipeConfig } from '../../src/recipes/kit/index.js';
import { sftConfigSchema } from '../../src/recipes/sft/index.js';

const ROOT = join(import.meta.dirname, '../..');

/** Where job and recipe settings are handled: REST jobs, workflows, CLI job commands, recipes. */
const SCOPE = [
  'src/control-plane/resources/jobs',
  'src/workflows',
  'src/cli/commands/jobs.ts',
  'src/cli/commands/trainer.ts',
  'src/recipes',
];
const DEFINITION = 'src/recipes/fields.ts';
/**
 * AdamW's per-step rate is what the schedule gives one step (the Training API takes any finite
 * rate >= 0 there), not the job's learning-rate setting: optimizer.ts is its one definition.
 */
const OWN_DEFINITIONS = new Set([DEFINITION, 'src/recipes/optimizer.ts']);

function files(path: string): string[] {
  const abs = join(ROOT, path);
  if (!statSync(abs).isDirectory()) return [path];
  return readdirSync(abs).flatMap((name) => files(join(path, name)));
}

const sources = SCOPE.flatMap(files)
  .filter((f) => f.endsWith('.ts') && !OWN_DEFINITIONS.has(f))
  .map((f) => ({ file: f, text: readFileSync(join(ROOT, f), 'utf8') }));

describe('one definition per setting', () => {
  it('scans the modules that handle settings', () => {
    expect(sources.map((s) => s.file)).toEqual(
      expect.arrayContaining([
        'src/control-plane/resources/jobs/sft.ts',
        'src/control-plane/resources/jobs/rft.ts',
        'src/workflows/activities/job-body.ts',
        'src/cli/commands/jobs.ts',
      ]),
    );
  });

  it.each(Object.keys(SETTINGS))('%s: no schema or literal default outside fields.ts', (key) => {
    const schema = new RegExp(`\\b${key}\\s*:\\s*z\\.`);
    const literalDefault = new RegExp(`\\b${key}\\s*\\?\\?\\s*-?[\\d.]`);
    const found = sources
      .filter((s) => schema.test(s.text) || literalDefault.test(s.text))
      .map((s) => relative(ROOT, join(ROOT, s.file)));
    expect(found).toEqual([]);
  });

  it('fields.ts names each setting once, with a default', () => {
    for (const [key, setting] of Object.entries(SETTINGS)) {
      const variants = 'schema' in setting ? [setting] : Object.values(setting);
      expect(variants.length, key).toBeGreaterThan(0);
      for (const v of variants as { schema: unknown; default: unknown }[]) {
        expect(v.schema, key).toBeDefined();
        expect(v.default, key).not.toBeUndefined();
      }
    }
    // A trainer takes the same learning-rate range as a job: one schema object, not a copy.
    expect(F.learningRate.trainer.schema).toBe(F.learningRate.job.schema);
  });

  it('gives the documented message, naming the value', () => {
    const message = (
      schema: { safeParse(x: unknown): { error?: { issues: { message: string }[] } } },
      x: unknown,
    ) => schema.safeParse(x).error?.issues[0]?.message;
    expect(message(F.learningRate.rft.schema, 1e-2)).toBe(
      'Learning rate 1e-2 outside valid range [1e-5, 5e-4]',
    );
    expect(message(F.temperature.schema, 0)).toBe('Temperature 0 outside valid range [0.1, 2.0]');
    expect(message(F.loraRank.rft.schema, 64)).toBe(
      'LoRA rank 64 must be a power of 2 in [4, 32], or 0 for full-parameter training',
    );
    expect(F.loraRank.rft.schema.safeParse(0).success).toBe(true);
    expect(message(F.dpoBeta.schema, 0.7)).toBe('DPO beta must satisfy 0 < beta < 0.5');
  });
});

describe('optimizer and schedule', () => {
  it('AdamW defaults are the engine’s; managed jobs keep beta2 0.999 and clipping at 1', () => {
    expect(adamW({ learningRate: 1e-3 })).toEqual({ learningRate: 1e-3, ...ADAMW_DEFAULTS });
    expect(ADAMW_DEFAULTS.beta2).toBe(0.95);
    expect(MANAGED_JOB_ADAMW).toEqual({
      beta1: 0.9,
      beta2: 0.999,
      weightDecay: 0,
      gradClipNorm: 1,
    });
    expect(() => adamW({ learningRate: 1e-3, beta2: 1 })).toThrow();
  });

  it('constant with warm-up is the managed jobs’ arithmetic, bit for bit', () => {
    const peak = 3e-4;
    for (const warmupSteps of [0, 1, 3, 7])
      for (let step = 0; step < 12; step++) {
        const before = warmupSteps <= 0 ? peak : peak * Math.min(1, (step + 1) / warmupSteps);
        const s = { kind: 'constant' as const, warmupSteps, minRatio: 0, peak, totalSteps: 12 };
        expect(Object.is(learningRateAt(s, step), before)).toBe(true);
      }
  });

  it('linear and cosine decay from the peak after warm-up to minRatio at the last step', () => {
    const base = { warmupSteps: 2, minRatio: 0.1, peak: 1, totalSteps: 10 };
    for (const kind of ['linear', 'cosine'] as const) {
      const rates = Array.from({ length: 10 }, (_, k) => learningRateAt({ ...base, kind }, k));
      expect(rates[0]).toBe(0.5);
      expect(rates[1]).toBe(1);
      expect(rates[9]).toBeCloseTo(0.1, 12);
      for (let k = 2; k < 10; k++) expect(rates[k]!).toBeLessThan(rates[k - 1]!);
    }
    const mid = (kind: 'linear' | 'cosine') =>
      learningRateAt({ ...base, minRatio: 0, totalSteps: 11, warmupSteps: 1, kind }, 5);
    expect(mid('linear')).toBeCloseTo(0.5, 12);
    expect(mid('cosine')).toBeCloseTo(0.5, 12);
  });
});

describe('supervised recipes’ batching', () => {
  it('settings only packed batches honour are refused without batch_tokens, naming them', () => {
    const parse = (input: Record<string, unknown>) =>
      parseRecipeConfig('sft', sftConfigSchema, { log_path: '/tmp/x', ...input });
    expect(() => parse({ eval_split: true, gradient_accumulation_steps: 2 })).toThrow(
      'invalid sft recipe config: gradient_accumulation_steps: gradient_accumulation_steps needs batch_tokens; eval_split: eval_split needs batch_tokens',
    );
    const packed = parse({ batch_tokens: 512, gradient_accumulation_steps: 2, eval_split: true });
    expect(packed).toMatchObject({ batch_tokens: 512, gradient_accumulation_steps: 2 });
    expect(() => parse({ batch_tokens: 0 })).toThrow(/batch_tokens: /);
  });
});

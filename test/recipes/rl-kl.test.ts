// The RL recipes' KL penalty (kl_beta) on the bundled model, trainers as real local pods: the
// reference is the base model before training — a forward-only trainer for a full-parameter
// policy, the policy's own trainer with the adapter disabled for a LoRA policy — and the loss
// the recipe's update step reports is grpo's with the KL term, checked against the formula
// computed here by hand from the two models' logprobs:
//   loss = Σ_active [-r·A + β·k3(ref - lp)] / n_active,  k3(y) = e^y - y - 1,
// with r = 1 (the datum's sampling logprobs are the policy's own), so loss = -A + β·mean k3.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIELDS } from '../../src/losses/index.js';
import { asyncRlConfigSchema } from '../../src/recipes/async-rl/index.js';
import { modelRenderer } from '../../src/recipes/kit/data.js';
import { openRecipeClients } from '../../src/recipes/kit/index.js';
import { rlConfigSchema } from '../../src/recipes/rl/index.js';
import {
  policyLossOf,
  referenceOf,
  trainStep,
  withReferenceLogprobs,
} from '../../src/recipes/rl/steps.js';
import type { TrainingDatum } from '../../src/sdk/index.js';
import { writeOnePrompt } from './toy-data.js';

let dir: string;
let dataset: string;
const quiet = pino({ level: 'silent' });
const BETA = 0.5;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-rl-kl-'));
  dataset = await writeOnePrompt(join(dir, 'prompt.jsonl'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const logprobsOf = (out: { lossFnOutputs: { logprobs: { data: ArrayLike<number> } }[] }) =>
  Array.from(out.lossFnOutputs[0]!.logprobs.data);

describe('rl recipe kl_beta', () => {
  it('refuses a KL penalty for a method without one, and starts no reference at kl_beta 0', async () => {
    for (const [method, name] of [
      ['dapo', 'DAPO'],
      ['gspo-token', 'GSPO_TOKEN'],
      ['cispo', 'CISPO'],
    ] as const) {
      const r = rlConfigSchema.safeParse({
        dataset,
        log_path: dir,
        loss_method: method,
        kl_beta: 0.01,
      });
      expect(r.success).toBe(false);
      expect(r.error?.issues[0]).toMatchObject({
        path: ['kl_beta'],
        message: `loss_config.kl_beta must be 0/unset when method is ${name}`,
      });
    }
    expect(
      asyncRlConfigSchema.safeParse({ dataset, log_path: dir, loss_method: 'dapo', kl_beta: 1 })
        .success,
    ).toBe(false);
    const off = rlConfigSchema.parse({ dataset, log_path: dir });
    // no service call at all: a reference would need one
    expect(await referenceOf(off, undefined as never)).toBeUndefined();
  });

  it.each([
    ['full-parameter (forward-only reference trainer)', 0, 2e-3],
    ['LoRA (the policy trainer, adapter disabled)', 4, 1e-1],
  ])(
    '%s: ref logprobs are the base model, the loss is grpo + β·k3',
    async (_, rank, lr) => {
      const config = rlConfigSchema.parse({
        dataset,
        log_path: join(dir, `rank-${rank}`),
        kl_beta: BETA,
        lora_rank: rank,
        threads: 1,
      });
      const clients = await openRecipeClients(config, { recipe: 'rl', log: quiet });
      try {
        const policy = await clients.service.createTrainingClient();
        const reference = await referenceOf(config, clients.service);
        expect(reference).toBeDefined();

        // one sequence: the prompt, then the answer (the learned tokens)
        const renderer = await modelRenderer(config.base_model);
        const r = renderer.render([
          { role: 'user', content: 'What is the capital of France?' },
          { role: 'assistant', content: 'The capital of France is Paris.' },
        ]);
        const targets = r.tokens.slice(1);
        const weights = r.weights.slice(1);
        const datum = (logprobs: number[], a: number): TrainingDatum => ({
          modelInput: r.tokens.slice(0, -1),
          lossFnInputs: {
            [FIELDS.targetTokens]: targets,
            [FIELDS.weights]: weights,
            [FIELDS.logprobs]: logprobs,
            [FIELDS.advantages]: targets.map(() => a),
          },
        });
        const probe = datum(
          targets.map(() => 0),
          0,
        );
        const base = logprobsOf(await policy.forward([probe]));
        const loss = policyLossOf(config);

        // before any update the policy is the reference: the KL term is 0, the loss is -A
        const first = await trainStep(policy, [datum(base, 1)], loss, config.adam, lr, reference);
        expect(first?.loss).toBeCloseTo(-1, 6);
        expect(first?.metrics['ref_kld:mean']).toBeCloseTo(0, 6);
        for (let s = 0; s < 3; s++) {
          const lp = logprobsOf(await policy.forward([probe]));
          await trainStep(policy, [datum(lp, 1)], loss, config.adam, lr, reference);
        }

        // the trained policy has moved away from the base; the reference has not
        const lp = logprobsOf(await policy.forward([probe]));
        const [withRef] = await withReferenceLogprobs(reference!, [datum(lp, 0.5)]);
        const ref = withRef!.lossFnInputs[FIELDS.refLogprobs] as number[];
        ref.forEach((x, j) => {
          expect(x).toBeCloseTo(base[j]!, 5);
        });
        let n = 0;
        let k3 = 0;
        weights.forEach((w, j) => {
          if (w > 0) {
            const y = ref[j]! - lp[j]!;
            k3 += Math.exp(y) - y - 1;
            n++;
          }
        });
        const meanK3 = k3 / n;
        expect(meanK3).toBeGreaterThan(1e-3); // the penalty is visible at the tolerance below

        const out = await trainStep(policy, [datum(lp, 0.5)], loss, config.adam, lr, reference);
        expect(out?.metrics['ref_kld:mean']).toBeCloseTo(meanK3, 5);
        expect(out?.loss).toBeCloseTo(-0.5 + BETA * meanK3, 5);
      } finally {
        await clients.close();
      }
    },
    120_000,
  );
});

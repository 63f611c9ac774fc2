/**
 * The parts of an RL step, shared by the synchronous and the asynchronous recipe (and timed
 * one by one by bench/recipes.ts): prompts, weight sync (save + hot-load), rollouts from the
 * deployment, rewards and group advantages into datums, and the policy update.
 */
import { z } from 'zod';
import {
  cispoLoss,
  computeGroupAdvantages,
  droLoss,
  FIELDS,
  type LossFn,
  rlMethodLoss,
} from '../../losses/index.js';
import type {
  DeploymentSampler,
  SampledCompletion,
  ServiceClient,
  TrainingClient,
  TrainingDatum,
} from '../../sdk/index.js';
import { messagesSchema } from '../../tokenizers/index.js';
import { modelRenderer, readRows } from '../kit/data.js';
import { adamW } from '../optimizer.js';
import type { RlConfig } from './config.js';
import { REWARDS } from './rewards.js';

export interface Prompt {
  tokens: number[];
  expected: string;
}

const promptRowSchema = z
  .object({ messages: messagesSchema, expected_answer: z.string() })
  .passthrough();

/** The dataset's prompts, rendered for generation. */
export async function readPrompts(config: RlConfig): Promise<{ prompts: Prompt[] }> {
  const renderer = await modelRenderer(config.base_model);
  const rows = await readRows(config.dataset, promptRowSchema);
  return {
    prompts: rows.map((r) => ({
      tokens: renderer.renderGenerationPrompt(r.messages),
      expected: r.expected_answer,
    })),
  };
}

/**
 * The policy loss of the config's method (src/losses); each is a mean already. grpo's KL term
 * is β·k3(ref - lp) per active token with β = kl_beta; it applies where the datums carry
 * reference logprobs, which the recipe adds only when kl_beta > 0 (trainStep's reference).
 */
export function policyLossOf(config: RlConfig): LossFn {
  switch (config.loss_method) {
    case 'cispo':
      return cispoLoss({});
    case 'dro':
      return droLoss({});
    default:
      return rlMethodLoss({ method: config.loss_method, klBeta: config.kl_beta });
  }
}

/** Saves the policy's weights for sampling and hot-loads them; the sampler serves them. */
export async function syncWeights(
  policy: TrainingClient,
  service: ServiceClient,
  version: number,
): Promise<DeploymentSampler> {
  const saved = await policy.saveWeightsForSampler(`sync-${String(version).padStart(6, '0')}`);
  return service.createDeploymentSampler({ modelPath: saved.uri });
}

export interface Rollouts {
  groups: SampledCompletion[][];
  rewards: number[][];
  /** The policy version the rollouts were sampled from. */
  version: number;
}

/** `completions_per_prompt` rollouts of each prompt; seeds fixed by (seed, step, prompt). */
export async function sampleRollouts(
  sampler: DeploymentSampler,
  prompts: readonly Prompt[],
  config: RlConfig,
  step: number,
  version: number,
): Promise<Rollouts> {
  const groups = await Promise.all(
    prompts.map((p, i) =>
      sampler.sampleWithTokens({
        promptTokens: p.tokens,
        n: config.completions_per_prompt,
        maxTokens: config.max_completion_tokens,
        temperature: config.temperature,
        logprobs: true,
        seed: (config.seed * 1_000_003 + step * 1_009 + i) % 2 ** 31,
      }),
    ),
  );
  const reward = REWARDS[config.reward];
  const rewards = groups.map((g, i) =>
    g.map((c) => reward(c.text, (prompts[i] as Prompt).expected)),
  );
  return { groups, rewards, version };
}

/** Datums of the groups whose rewards differ (uniform groups carry no signal). */
export function rolloutDatums(r: Rollouts): TrainingDatum[] {
  const adv = computeGroupAdvantages(r.rewards);
  return adv.kept.flatMap((g, k) =>
    (r.groups[g] as SampledCompletion[]).map((c, j) => {
      const a = (adv.advantages[k] as number[])[j] as number;
      const targets = c.fullTokens.slice(1);
      const lp = targets.map((_, t) =>
        t >= c.promptLen - 1 ? (c.inferenceLogprobs?.[t - (c.promptLen - 1)] ?? 0) : 0,
      );
      return {
        modelInput: c.fullTokens.slice(0, -1),
        lossFnInputs: {
          [FIELDS.targetTokens]: targets,
          [FIELDS.weights]: targets.map((_, t) => (t >= c.promptLen - 1 ? 1 : 0)),
          [FIELDS.logprobs]: lp,
          [FIELDS.advantages]: targets.map(() => a),
        },
      };
    }),
  );
}

/**
 * The frozen reference the KL penalty measures against (the base model before training: a
 * forward-only trainer, or the LoRA policy's trainer with its adapter disabled), or undefined
 * when kl_beta is 0 (no KL: no reference trainer is started, as the cookbook provisions).
 */
export async function referenceOf(
  config: RlConfig,
  service: ServiceClient,
): Promise<TrainingClient | undefined> {
  return config.kl_beta > 0 ? service.createReferenceClient() : undefined;
}

/** The datums with the reference's logprobs of their targets as `ref_logprobs`. */
export async function withReferenceLogprobs(
  reference: TrainingClient,
  datums: readonly TrainingDatum[],
): Promise<TrainingDatum[]> {
  const out = await reference.forward(datums);
  return datums.map((d, i) => ({
    ...d,
    lossFnInputs: {
      ...d.lossFnInputs,
      [FIELDS.refLogprobs]: Array.from(
        (out.lossFnOutputs[i] as { logprobs: { data: ArrayLike<number> } }).logprobs.data,
      ),
    },
  }));
}

/**
 * One policy update on the datums (nothing to learn from: no step, the optimizer untouched).
 * With a reference, its logprobs are added first so that the loss's KL term applies.
 */
export async function trainStep(
  policy: TrainingClient,
  datums: TrainingDatum[],
  loss: LossFn,
  adam: Omit<Parameters<typeof adamW>[0], 'learningRate'>,
  learningRate: number,
  reference?: TrainingClient,
): Promise<{ loss: number; metrics: Record<string, number> } | undefined> {
  if (datums.length === 0) return undefined;
  const data = reference ? await withReferenceLogprobs(reference, datums) : datums;
  const fb = await policy.forwardBackwardCustom(data, loss);
  const opt = await policy.optimStep(adamW({ ...adam, learningRate }));
  return { loss: fb.loss, metrics: { ...fb.metrics, 'grad_norm:last': opt.gradNorm } };
}

export function meanReward(r: Rollouts): number {
  const all = r.rewards.flat();
  return all.reduce((a, b) => a + b, 0) / Math.max(all.length, 1);
}

/**
 * The parts of an RL step, defined once: the synchronous and the asynchronous recipe and
 * managed RFT jobs (src/workflows/activities/rft.ts) run them (and bench/recipes.ts times
 * them one by one): prompts and their epoch plan, weight sync (save + hot-load), seeded
 * rollouts from the deployment, rewards and group advantages into datums, the policy update
 * and the step's metrics. Each caller brings its own I/O: the recipe scores with a built-in
 * reward, a managed job with its evaluator's sandbox (or rolls out on a remote server).
 */
import { z } from 'zod';
import { planEpochs } from '../../datasets/index.js';
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

/** One step of an epoch plan: the prompts it rolls out, in order. */
export interface PlannedStep {
  epoch: number;
  /** Indices into the prompts. */
  prompts: number[];
  /** The epoch's last step. */
  endsEpoch: boolean;
}

/** Prompts per step: the chunk, or the whole dataset when it has < 2 chunks (or chunk -1). */
export function chunkLength(promptCount: number, chunkSize: number): number {
  if (chunkSize <= 0 || promptCount < 2 * chunkSize) return promptCount;
  return chunkSize;
}

/**
 * The managed RFT jobs' data plan: `epochs` seeded orders of the prompts (src/datasets), each
 * cut into steps of `chunkLength` prompts.
 */
export function epochSteps(
  promptCount: number,
  o: { epochs: number; seed: number; chunkSize: number },
): PlannedStep[] {
  const chunk = chunkLength(promptCount, o.chunkSize);
  const steps: PlannedStep[] = [];
  planEpochs(promptCount, { epochs: o.epochs, seed: o.seed }).forEach((order, epoch) => {
    for (let i = 0; i < order.length; i += chunk) {
      steps.push({
        epoch,
        prompts: order.slice(i, i + chunk),
        endsEpoch: i + chunk >= order.length,
      });
    }
  });
  return steps;
}

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

/** How long a weight sync's two halves took, in seconds (a loop's step metrics). */
export interface SyncTimes {
  /** The trainer's sampler save (a delta after the first), its wait in the trainer's queue included. */
  saveS: number;
  /** Hot-loading it until every replica serves it. */
  hotLoadS: number;
}

/**
 * Saves the policy's weights for sampling and hot-loads them; the sampler serves them.
 * `times`, when given, receives how long each half took.
 */
export async function syncWeights(
  policy: TrainingClient,
  service: ServiceClient,
  version: number,
  times?: SyncTimes,
): Promise<DeploymentSampler> {
  const t0 = performance.now();
  const saved = await policy.saveWeightsForSampler(`sync-${String(version).padStart(6, '0')}`);
  const t1 = performance.now();
  const sampler = await service.createDeploymentSampler({ modelPath: saved.uri });
  if (times) {
    times.saveS = (t1 - t0) / 1000;
    times.hotLoadS = (performance.now() - t1) / 1000;
  }
  return sampler;
}

/** What a rollout leaves to train on: the sampled tokens and their inference logprobs. */
export type RolloutSample = Pick<
  SampledCompletion,
  'fullTokens' | 'promptLen' | 'inferenceLogprobs' | 'text' | 'snapshotIdentity'
>;

export interface Rollouts {
  /** Each prompt's rollouts; null: one that left nothing to train on (a failed remote one). */
  groups: (RolloutSample | null)[][];
  rewards: number[][];
  /** Whether each reward is a valid score (an evaluator's verdict); absent: all are. */
  valid?: boolean[][];
  /** The policy version the rollouts were sampled from. */
  version: number;
}

/** The sampling settings of a step's rollouts (the recipe's config, a managed job's plan). */
export interface RolloutSampling {
  /** Rollouts per prompt. */
  n: number;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
}

/**
 * The seed of prompt `prompt`'s rollouts at step `step` (each rollout j of the group samples
 * with seed + j): seeded sampling is reproducible, so a resumed run rolls out what the
 * uninterrupted one did. Step -1 is the held-out evaluation's.
 */
export function rolloutSeed(seed: number, step: number, prompt: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 31) + step * 100_003 + prompt * 7919) >>> 0;
}

/** `work` over `items` with at most `limit` in flight; results in the items' order. */
export async function inLanes<T, R>(
  items: readonly T[],
  limit: number,
  work: (x: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i] as T, i);
    }
  });
  await Promise.all(lanes);
  return out;
}

/** Prompts rolled out at once: `maxConcurrent` rollouts in flight at most (n per prompt). */
export function promptLanes(maxConcurrent: number | undefined, n: number): number {
  return maxConcurrent === undefined
    ? Number.POSITIVE_INFINITY
    : Math.max(1, Math.floor(maxConcurrent / n));
}

/** One prompt's group: `n` rollouts from the deployment, with inference logprobs. */
export function sampleGroup(
  sampler: DeploymentSampler,
  promptTokens: number[],
  s: RolloutSampling,
  seed: number,
): Promise<SampledCompletion[]> {
  return sampler.sampleWithTokens({
    promptTokens,
    n: s.n,
    maxTokens: s.maxTokens,
    temperature: s.temperature,
    topP: s.topP,
    topK: s.topK,
    logprobs: true,
    seed,
  });
}

/** The recipe's rollout settings. */
export function rolloutSampling(config: RlConfig): RolloutSampling {
  return {
    n: config.completions_per_prompt,
    maxTokens: config.max_completion_tokens,
    temperature: config.temperature,
    topP: config.top_p,
    topK: config.top_k,
  };
}

/** `completions_per_prompt` rollouts of each prompt, scored by the config's reward. */
export async function sampleRollouts(
  sampler: DeploymentSampler,
  prompts: readonly Prompt[],
  config: RlConfig,
  step: number,
  version: number,
): Promise<Rollouts> {
  const sampling = rolloutSampling(config);
  const groups = await inLanes(
    prompts,
    promptLanes(config.max_concurrent_rollouts, sampling.n),
    (p, i) => sampleGroup(sampler, p.tokens, sampling, rolloutSeed(config.seed, step, i)),
  );
  const reward = REWARDS[config.reward];
  const rewards = groups.map((g, i) =>
    g.map((c) => reward(c.text, (prompts[i] as Prompt).expected)),
  );
  return { groups, rewards, version };
}

/**
 * Datums of the groups whose rewards differ (uniform groups carry no signal): each rollout's
 * completion trained with its group z-score as the advantage, the prompt masked.
 */
export function rolloutDatums(r: Rollouts): TrainingDatum[] {
  const adv = computeGroupAdvantages(r.rewards);
  return adv.kept.flatMap((g, k) =>
    (r.groups[g] as (RolloutSample | null)[]).flatMap((c, j) => {
      if (!c) return [];
      const a = (adv.advantages[k] as number[])[j] as number;
      const targets = c.fullTokens.slice(1);
      const lp = targets.map((_, t) =>
        t >= c.promptLen - 1 ? (c.inferenceLogprobs?.[t - (c.promptLen - 1)] ?? 0) : 0,
      );
      return [
        {
          modelInput: c.fullTokens.slice(0, -1),
          lossFnInputs: {
            [FIELDS.targetTokens]: targets,
            [FIELDS.weights]: targets.map((_, t) => (t >= c.promptLen - 1 ? 1 : 0)),
            [FIELDS.logprobs]: lp,
            [FIELDS.advantages]: targets.map(() => a),
          },
        },
      ];
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

/**
 * A step's metrics (the recipe's tracker and a managed job's metric rows log the same):
 * rewards, groups kept and dropped, and the update's loss, its loss metrics and grad norm
 * (loss 0 when no group had a signal and nothing was updated).
 */
export function rolloutMetrics(
  r: Rollouts,
  out: { loss: number; metrics: Record<string, number> } | undefined,
): Record<string, number> {
  const all = r.rewards.flat();
  const valid = r.valid ? r.valid.flat().filter((v) => v).length : all.length;
  const adv = computeGroupAdvantages(r.rewards);
  return {
    ...(out ? { 'policy_loss:mean': out.loss, ...out.metrics } : {}),
    'reward:mean': meanReward(r),
    'reward:min': Math.min(...all),
    'reward:max': Math.max(...all),
    'rollouts:sum': all.length,
    'valid:mean': valid / Math.max(all.length, 1),
    'groups_kept:sum': adv.kept.length,
    'groups_dropped:sum': adv.dropped.length,
    'loss:mean': out?.loss ?? 0,
  };
}

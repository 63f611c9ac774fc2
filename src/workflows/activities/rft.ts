/**
 * One managed-RFT policy step: serve the current weights on the job's deployment (a sampler
 * snapshot hot-loaded into it: base first, arc_v2 deltas after), roll out n candidates per
 * prompt of the chunk with inference logprobs, score each with the evaluator, turn the groups'
 * scores into advantages (zero-variance groups dropped, not replaced), and take one step of
 * the job's loss method (grpo / dapo / gspo-token; src/losses) on the kept rollouts.
 *
 * Deterministic for resume: prompt order and chunks come from the plan, each request has a
 * seed derived from (job seed, step, prompt), and seeded deployment sampling is reproducible.
 */

import { randomBytes } from 'node:crypto';
import { parseDataset, planEpochs, type RftPrompt, rftPrompts } from '../../datasets/index.js';
import type { Evaluate, Evaluation } from '../../evaluators/index.js';
import { computeGroupAdvantages, FIELDS, rlMethodLoss } from '../../losses/index.js';
import { MANAGED_JOB_ADAMW } from '../../recipes/index.js';
import type { DeploymentSampler, SampledCompletion } from '../../sdk/deployment-sampler.js';
import type { TrainingClient } from '../../sdk/training-client.js';
import type { TrainingDatum } from '../../sdk/types.js';
import type { Renderer } from '../../tokenizers/index.js';
import type { RftSettings, TrainingPlan } from '../types.js';
import type { RolloutTracer } from './remote-rollouts.js';

export interface RftStepPlan {
  epoch: number;
  /** Indices into the prompts. */
  prompts: number[];
  /** The epoch's last step (early stopping is decided there). */
  endsEpoch: boolean;
}

export interface RftData {
  prompts: RftPrompt[];
  steps: RftStepPlan[];
  /** The evaluation dataset's prompts (empty without one): eval reward at segment ends. */
  evalPrompts: RftPrompt[];
}

/** Prompts per step: the chunk size, or the whole dataset when it has < 2 chunks (or -1). */
export function chunkLength(promptCount: number, chunkSize: number): number {
  if (chunkSize <= 0 || promptCount < 2 * chunkSize) return promptCount;
  return chunkSize;
}

export function buildRftData(
  plan: Pick<TrainingPlan, 'epochs' | 'seed'> & { rft: Pick<RftSettings, 'chunkSize'> },
  text: string,
  renderer: Renderer,
  evalText: string | null = null,
): RftData {
  const prompts = rftPrompts(parseDataset('rft', text).rows, renderer);
  const evalPrompts = evalText ? rftPrompts(parseDataset('rft', evalText).rows, renderer) : [];
  const chunk = chunkLength(prompts.length, plan.rft.chunkSize);
  const steps: RftStepPlan[] = [];
  planEpochs(prompts.length, { epochs: plan.epochs, seed: plan.seed }).forEach((order, epoch) => {
    for (let i = 0; i < order.length; i += chunk) {
      steps.push({
        epoch,
        prompts: order.slice(i, i + chunk),
        endsEpoch: i + chunk >= order.length,
      });
    }
  });
  return { prompts, steps, evalPrompts };
}

/**
 * Mean evaluator score of one sample per evaluation prompt from the deployment's current
 * weights, at the job's sampling settings with fixed seeds (comparable across steps).
 */
export async function evalReward(
  ctx: Pick<RftStepContext, 'plan' | 'sampler' | 'evaluate'>,
  prompts: readonly RftPrompt[],
): Promise<number> {
  const s = ctx.plan.rft;
  const scores = await mapLimited(
    prompts,
    Math.max(1, s.maxConcurrentRollouts),
    async (prompt, i) => {
      const [sample] = await ctx.sampler.sampleWithTokens({
        promptTokens: prompt.promptTokens,
        n: 1,
        maxTokens: s.maxTokens,
        temperature: s.temperature,
        topP: s.topP,
        topK: s.topK,
        seed: requestSeed(ctx.plan.seed, -1, i),
      });
      const scored = await ctx.evaluate({
        messages: prompt.messages,
        completion: sample?.text ?? '',
        groundTruth: prompt.groundTruth,
        row: prompt.extra,
      });
      return scored.score;
    },
  );
  return scores.reduce((a, b) => a + b, 0) / Math.max(scores.length, 1);
}

export interface RolloutRecord {
  step: number;
  rowId: string;
  line: number;
  candidate: number;
  completion: string;
  score: number;
  valid: boolean;
  reason: string;
  snapshot: string | null;
}

/** What a rollout left to train on: the sampled tokens and their inference logprobs. */
type RolloutSample = Pick<
  SampledCompletion,
  'fullTokens' | 'promptLen' | 'inferenceLogprobs' | 'text' | 'snapshotIdentity'
>;

interface Group {
  prompt: RftPrompt;
  /** null: the rollout produced nothing to train on (a remote rollout that failed). */
  samples: (RolloutSample | null)[];
  scores: Evaluation[];
}

export interface RemoteEnvironment {
  tracer: RolloutTracer;
  gatewayUrl: string;
  gatewayHeaders: Record<string, string>;
}

export interface RftStepContext {
  plan: TrainingPlan & { rft: RftSettings };
  data: RftData;
  policy: TrainingClient;
  /** Forward-only reference for the KL term (grpo's default k3 KL needs it). */
  reference: TrainingClient | null;
  sampler: DeploymentSampler;
  evaluate: Evaluate;
  learningRate: number;
  /** Set when the job has a remote server: rollouts run there through the tracer. */
  remote: RemoteEnvironment | null;
}

/** Runs `work` over `items` with at most `limit` in flight, keeping the order of results. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  work: (x: T, i: number) => Promise<R>,
) {
  const out = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i]!, i);
    }
  });
  await Promise.all(lanes);
  return out;
}

/** A rollout as a policy-loss datum: the completion's tokens trained, the prompt masked. */
function rolloutDatum(c: RolloutSample, advantage: number): TrainingDatum {
  const n = c.fullTokens.length - 1;
  const logprobs = new Array<number>(n).fill(0);
  const mask = new Array<number>(n).fill(0);
  const inf = c.inferenceLogprobs ?? [];
  for (let j = c.promptLen - 1; j < n; j++) {
    logprobs[j] = inf[j - (c.promptLen - 1)] ?? 0;
    mask[j] = 1;
  }
  return {
    modelInput: c.fullTokens.slice(0, -1),
    lossFnInputs: {
      [FIELDS.targetTokens]: c.fullTokens.slice(1),
      [FIELDS.weights]: mask,
      [FIELDS.logprobs]: logprobs,
      [FIELDS.advantages]: [advantage],
    },
  };
}

function requestSeed(seed: number, step: number, prompt: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 31) + step * 100_003 + prompt * 7919) >>> 0;
}

/** n samples of one prompt from the deployment, scored by the evaluator. */
async function localGroup(ctx: RftStepContext, prompt: RftPrompt, seed: number): Promise<Group> {
  const s = ctx.plan.rft;
  const samples = await ctx.sampler.sampleWithTokens({
    promptTokens: prompt.promptTokens,
    n: s.n,
    maxTokens: s.maxTokens,
    temperature: s.temperature,
    topP: s.topP,
    topK: s.topK,
    logprobs: true,
    seed,
  });
  const scores = await Promise.all(
    samples.map((c) =>
      ctx.evaluate({
        messages: prompt.messages,
        completion: c.text,
        groundTruth: prompt.groundTruth,
        row: prompt.extra,
      }),
    ),
  );
  return { prompt, samples, scores };
}

/** n rollouts of one prompt on the user's server; each trains on its last model call. */
async function remoteGroup(
  ctx: RftStepContext,
  remote: RemoteEnvironment,
  prompt: RftPrompt,
  step: number,
): Promise<Group> {
  const s = ctx.plan.rft;
  const jobId = ctx.plan.jobName.split('/').pop()!;
  // A step run again (a retried activity, a resumed job) makes new rollout ids, so a late
  // record of an earlier attempt can never end one of this attempt's rollouts.
  const attempt = randomBytes(3).toString('hex');
  const runs = await Promise.all(
    Array.from({ length: s.n }, (_, j) =>
      remote.tracer.run({
        remoteServerUrl: s.remoteServerUrl!,
        gatewayUrl: remote.gatewayUrl,
        gatewayHeaders: remote.gatewayHeaders,
        account: ctx.plan.account,
        rolloutId: `${jobId}-s${step + 1}-r${prompt.rowIndex}-c${j}-${attempt}`,
        metadata: {
          invocation_id: jobId,
          experiment_id: jobId,
          run_id: `step-${step + 1}`,
          row_id: prompt.rowId,
        },
        messages: prompt.messages,
        tools: prompt.tools,
        completionParams: {
          model: ctx.plan.baseModel,
          temperature: s.temperature,
          max_tokens: s.maxTokens,
          top_p: s.topP,
          top_k: s.topK,
        },
        timeoutMs: s.rolloutTimeoutMs,
      }),
    ),
  );
  const samples = runs.map((r): RolloutSample | null => {
    const last = r.calls.at(-1);
    if (r.status !== 'finished' || !last) return null;
    return {
      fullTokens: [...last.promptTokens, ...last.completionTokens],
      promptLen: last.promptTokens.length,
      inferenceLogprobs: last.logprobs,
      text: last.text,
      snapshotIdentity: last.snapshot,
    };
  });
  const scores = await Promise.all(
    runs.map(async (r, j): Promise<Evaluation> => {
      const sample = samples[j];
      if (!sample) return { score: 0, valid: false, reason: r.message || 'no model call was made' };
      const last = r.calls.at(-1)!;
      return ctx.evaluate({
        messages: [...last.messages, { role: 'assistant', content: sample.text }],
        completion: sample.text,
        groundTruth: prompt.groundTruth,
        row: prompt.extra,
      });
    }),
  );
  return { prompt, samples, scores };
}

export async function runRftStep(ctx: RftStepContext, step: number) {
  const { plan, data } = ctx;
  const s = plan.rft;
  const chosen = data.steps[step]!.prompts;
  const groups = await mapLimited(
    chosen,
    Math.max(1, Math.floor(s.maxConcurrentRollouts / s.n)),
    (index, i) => {
      const prompt = data.prompts[index]!;
      return ctx.remote
        ? remoteGroup(ctx, ctx.remote, prompt, step)
        : localGroup(ctx, prompt, requestSeed(plan.seed, step, i));
    },
  );
  const rewards = groups.map((g) => g.scores.map((e) => e.score));
  const adv = computeGroupAdvantages(rewards);
  const datums: TrainingDatum[] = [];
  adv.kept.forEach((g, k) => {
    groups[g]!.samples.forEach((c, j) => {
      if (c) datums.push(rolloutDatum(c, adv.advantages[k]![j]!));
    });
  });
  const metrics: Record<string, number> = {};
  if (datums.length > 0) {
    if (ctx.reference) {
      const ref = await ctx.reference.forward(datums);
      datums.forEach((d, i) => {
        (d.lossFnInputs as Record<string, unknown>)[FIELDS.refLogprobs] = Array.from(
          ref.lossFnOutputs[i]!.logprobs.data as ArrayLike<number>,
        );
      });
    }
    const loss = rlMethodLoss({ method: s.lossMethod, klBeta: s.klBeta });
    const out = await ctx.policy.forwardBackwardCustom(datums, loss);
    await ctx.policy.optimStep({ learningRate: ctx.learningRate, ...MANAGED_JOB_ADAMW }, 'none');
    metrics['policy_loss:mean'] = out.loss;
    for (const [k, v] of Object.entries(out.metrics)) metrics[k] = v;
  }
  const all = rewards.flat();
  const values: Record<string, number> = {
    ...metrics,
    'reward:mean': all.reduce((a, b) => a + b, 0) / Math.max(all.length, 1),
    'reward:min': Math.min(...all),
    'reward:max': Math.max(...all),
    'rollouts:sum': all.length,
    'valid:mean':
      groups.flatMap((g) => g.scores).filter((e) => e.valid).length / Math.max(all.length, 1),
    'groups_kept:sum': adv.kept.length,
    'groups_dropped:sum': adv.dropped.length,
    'loss:mean': metrics['policy_loss:mean'] ?? 0,
  };
  const rollouts: RolloutRecord[] = groups.flatMap((g) =>
    g.samples.map((c, j) => ({
      step: step + 1,
      rowId: g.prompt.rowId,
      line: g.prompt.line,
      candidate: j,
      completion: c?.text ?? '',
      score: g.scores[j]!.score,
      valid: g.scores[j]!.valid,
      reason: g.scores[j]!.reason,
      snapshot: c?.snapshotIdentity ?? null,
    })),
  );
  let promptTokens = 0;
  let completionTokens = 0;
  for (const g of groups)
    for (const c of g.samples)
      if (c) {
        promptTokens += c.promptLen;
        completionTokens += c.fullTokens.length - c.promptLen;
      }
  return { values, rollouts, tokens: { prompt: promptTokens, completion: completionTokens } };
}

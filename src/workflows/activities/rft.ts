/**
 * One managed-RFT policy step: the rl recipe's step (src/recipes/rl/steps.ts) with the job's
 * I/O. Serve the current weights on the job's deployment (a sampler snapshot hot-loaded into
 * it: base first, arc_v2 deltas after), roll out n candidates per prompt of the chunk with
 * inference logprobs, score each with the evaluator (or run the rollouts on the job's remote
 * server), then the recipe's group advantages (zero-variance groups dropped, not replaced),
 * datums, update with the job's loss method (grpo / dapo / gspo-token; src/losses) and step
 * metrics. The rl recipe with the job's settings (its `epochs` plan, the evaluator's scores as
 * its reward) trains the same weights: test/workflows/managed-job-is-recipe.test.ts.
 *
 * Deterministic for resume: prompt order and chunks come from the plan, each request has a
 * seed derived from (job seed, step, prompt), and seeded deployment sampling is reproducible.
 */
import { randomBytes } from 'node:crypto';
import { parseDataset, type RftPrompt, rftPrompts } from '../../datasets/index.js';
import type { Evaluate, Evaluation } from '../../evaluators/index.js';
import { rlMethodLoss } from '../../losses/index.js';
import {
  epochSteps,
  inLanes,
  MANAGED_JOB_ADAMW,
  type PlannedStep,
  promptLanes,
  type RolloutSample,
  type RolloutSampling,
  type Rollouts,
  rolloutDatums,
  rolloutMetrics,
  rolloutSeed,
  sampleGroup,
  trainStep,
} from '../../recipes/index.js';
import type { DeploymentSampler } from '../../sdk/deployment-sampler.js';
import type { TrainingClient } from '../../sdk/training-client.js';
import type { Renderer } from '../../tokenizers/index.js';
import type { RftSettings, TrainingPlan } from '../types.js';
import type { RolloutTracer } from './remote-rollouts.js';

/** A step of the job's plan (early stopping is decided at an epoch's last step). */
export type RftStepPlan = PlannedStep;

export interface RftData {
  prompts: RftPrompt[];
  steps: RftStepPlan[];
  /** The evaluation dataset's prompts (empty without one): eval reward at segment ends. */
  evalPrompts: RftPrompt[];
}

export function buildRftData(
  plan: Pick<TrainingPlan, 'epochs' | 'seed'> & { rft: Pick<RftSettings, 'chunkSize'> },
  text: string,
  renderer: Renderer,
  evalText: string | null = null,
): RftData {
  const prompts = rftPrompts(parseDataset('rft', text).rows, renderer);
  const evalPrompts = evalText ? rftPrompts(parseDataset('rft', evalText).rows, renderer) : [];
  const steps = epochSteps(prompts.length, {
    epochs: plan.epochs,
    seed: plan.seed,
    chunkSize: plan.rft.chunkSize,
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
  const scores = await inLanes(prompts, Math.max(1, s.maxConcurrentRollouts), async (prompt, i) => {
    const [sample] = await ctx.sampler.sampleWithTokens({
      promptTokens: prompt.promptTokens,
      n: 1,
      maxTokens: s.maxTokens,
      temperature: s.temperature,
      topP: s.topP,
      topK: s.topK,
      seed: rolloutSeed(ctx.plan.seed, -1, i),
    });
    const scored = await ctx.evaluate({
      messages: prompt.messages,
      completion: sample?.text ?? '',
      groundTruth: prompt.groundTruth,
      row: prompt.extra,
    });
    return scored.score;
  });
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

/** The job's rollout sampling, as the rl recipe's `rolloutSampling` gives it from a config. */
function samplingOf(s: RftSettings): RolloutSampling {
  return {
    n: s.n,
    maxTokens: s.maxTokens,
    temperature: s.temperature,
    topP: s.topP,
    topK: s.topK,
  };
}

/** n samples of one prompt from the deployment, scored by the evaluator. */
async function localGroup(ctx: RftStepContext, prompt: RftPrompt, seed: number): Promise<Group> {
  const samples = await sampleGroup(
    ctx.sampler,
    prompt.promptTokens,
    samplingOf(ctx.plan.rft),
    seed,
  );
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

/**
 * The rl recipe's step (src/recipes/rl/steps.ts) with the job's I/O: the step's prompts in
 * lanes of `maxConcurrentRollouts`, each group scored by the evaluator (or rolled out on the
 * remote server), then the recipe's datums, update and metrics.
 */
export async function runRftStep(ctx: RftStepContext, step: number) {
  const { plan, data } = ctx;
  const s = plan.rft;
  const chosen = data.steps[step]!.prompts;
  const groups = await inLanes(chosen, promptLanes(s.maxConcurrentRollouts, s.n), (index, i) => {
    const prompt = data.prompts[index]!;
    return ctx.remote
      ? remoteGroup(ctx, ctx.remote, prompt, step)
      : localGroup(ctx, prompt, rolloutSeed(plan.seed, step, i));
  });
  const sampled: Rollouts = {
    groups: groups.map((g) => g.samples),
    rewards: groups.map((g) => g.scores.map((e) => e.score)),
    valid: groups.map((g) => g.scores.map((e) => e.valid)),
    version: step,
  };
  const out = await trainStep(
    ctx.policy,
    rolloutDatums(sampled),
    rlMethodLoss({ method: s.lossMethod, klBeta: s.klBeta }),
    MANAGED_JOB_ADAMW,
    ctx.learningRate,
    ctx.reference ?? undefined,
  );
  const values: Record<string, number> = {
    ...rolloutMetrics(sampled, out),
    'learning_rate:last': ctx.learningRate,
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

/**
 * The IGPO loop: every step (1) hot-loads the policy into the sampling deployment, (2) plays
 * `completions_per_prompt` episodes of each prompt, turn by turn, (3) scores before the first
 * turn and after each turn but the last the policy's probability of the expected answer (the
 * geometric mean of its token probabilities, echoed by the deployment) — its rise over a turn
 * is that turn's information gain — and the last reply's outcome reward (the last turn's only
 * reward), (4) turns them into per-turn
 * advantages (igpoTurnAdvantages: each reward kind z-normalised over the group's turns that
 * have it, summed, discounted backwards) and updates the policy with the GRPO loss, one datum per turn.
 */
import { z } from 'zod';
import { FIELDS, igpoTurnAdvantages, rlMethodLoss } from '../../losses/index.js';
import type {
  DeploymentSampler,
  PromotedModel,
  SampledCompletion,
  TrainingDatum,
} from '../../sdk/index.js';
import { type MessageInput, messagesSchema, type Renderer } from '../../tokenizers/index.js';
import { peakLearningRate } from '../kit/base-config.js';
import { startPolicy } from '../kit/checkpoints.js';
import type { RecipeClients } from '../kit/clients.js';
import { batchIndices, modelRenderer, readRows } from '../kit/data.js';
import { RecipeError } from '../kit/errors.js';
import { REWARDS } from '../rl/rewards.js';
import { syncWeights, trainStep } from '../rl/steps.js';
import { learningRateAt } from '../schedule.js';
import type { IgpoConfig } from './config.js';

export interface IgpoResult {
  steps: number;
  /** Mean outcome reward (last turn) per step. */
  rewards: number[];
  resumedFrom?: string;
  model?: PromotedModel;
}

interface Episode {
  turns: SampledCompletion[];
  /** Information gain of each turn but the last (the last turn's reward is the outcome). */
  gains: number[];
  outcome: number;
}

const rowSchema = z
  .object({ messages: messagesSchema, expected_answer: z.string().min(1) })
  .passthrough();
type Row = z.output<typeof rowSchema>;

/**
 * P(answer | conversation) as the geometric mean of the answer's token probabilities (its
 * content and end-of-turn token). Only the answer is weighted: the conversation's own
 * assistant turns are context, and counting their tokens would score how likely the policy
 * finds its own replies instead of what they told it about the answer.
 */
async function answerProbability(
  sampler: DeploymentSampler,
  renderer: Renderer,
  messages: readonly MessageInput[],
  answer: string,
): Promise<number> {
  const r = renderer.render([
    ...messages.map((m) => ({ ...m, weight: 0 as const })),
    { role: 'assistant', content: answer },
  ]);
  const [c] = await sampler.sampleWithTokens({
    promptTokens: r.tokens,
    maxTokens: 1,
    echo: true,
    logprobs: true,
    temperature: 1,
  });
  const lps = c?.inferenceLogprobs;
  if (!lps || lps.length < r.tokens.length - 1)
    throw new RecipeError('the sampling deployment returned no prompt logprobs');
  // lps[t] scores tokens[t + 1]; the answer's tokens are the weighted ones
  let sum = 0;
  let n = 0;
  for (let t = 0; t < r.tokens.length - 1; t++) {
    if ((r.weights[t + 1] ?? 0) > 0) {
      sum += lps[t] as number;
      n++;
    }
  }
  return n > 0 ? Math.exp(sum / n) : 0;
}

async function playEpisode(
  sampler: DeploymentSampler,
  renderer: Renderer,
  row: Row,
  config: IgpoConfig,
  seed: number,
): Promise<Episode> {
  const messages: MessageInput[] = [...(row.messages as MessageInput[])];
  const turns: SampledCompletion[] = [];
  const gains: number[] = [];
  let before = await answerProbability(sampler, renderer, messages, row.expected_answer);
  let last = '';
  for (let t = 0; t < config.turns; t++) {
    const [c] = await sampler.sampleWithTokens({
      promptTokens: renderer.renderGenerationPrompt(messages),
      maxTokens: config.max_completion_tokens,
      temperature: config.temperature,
      logprobs: true,
      seed: (seed * 31 + t) % 2 ** 31,
    });
    if (!c) throw new RecipeError('the sampling deployment returned no completion');
    turns.push(c);
    last = c.text;
    messages.push({ role: 'assistant', content: c.text.trim() });
    // the last turn is the answer itself: the outcome reward scores it, not a gain
    if (t + 1 === config.turns) break;
    messages.push({ role: 'user', content: config.follow_up });
    const after = await answerProbability(sampler, renderer, messages, row.expected_answer);
    gains.push(after - before);
    before = after;
  }
  return { turns, gains, outcome: REWARDS[config.reward](last, row.expected_answer) };
}

/** One GRPO datum per turn, its tokens carrying the turn's advantage. */
function turnDatums(group: readonly Episode[], gamma: number): TrainingDatum[] {
  // IG on every turn but the last, the outcome on the last only: absent rewards are null so
  // that neither kind is normalised over padding
  const adv = igpoTurnAdvantages(
    group.map((e) => e.turns.map((_, t) => e.gains[t] ?? null)),
    group.map((e) => e.turns.map((_, t) => (t === e.turns.length - 1 ? e.outcome : null))),
    { gamma },
  );
  return group.flatMap((e, i) =>
    e.turns
      .map((c, t) => ({ c, a: (adv[i] as number[])[t] as number }))
      .filter(({ c, a }) => c.completionLen > 0 && a !== 0)
      .map(({ c, a }) => {
        const targets = c.fullTokens.slice(1);
        const start = c.promptLen - 1;
        return {
          modelInput: c.fullTokens.slice(0, -1),
          lossFnInputs: {
            [FIELDS.targetTokens]: targets,
            [FIELDS.weights]: targets.map((_, k) => (k >= start ? 1 : 0)),
            [FIELDS.logprobs]: targets.map((_, k) =>
              k >= start ? (c.inferenceLogprobs?.[k - start] ?? 0) : 0,
            ),
            [FIELDS.advantages]: targets.map((_, k) => (k >= start ? a : 0)),
          },
        };
      }),
  );
}

export async function run(config: IgpoConfig, clients: RecipeClients): Promise<IgpoResult> {
  const { service, tracker, log } = clients;

  // 1. episodes' openings and the policy, restored from the log path
  const renderer = await modelRenderer(config.base_model);
  const rows = await readRows(config.dataset, rowSchema);
  const { policy, ckpt, resumed } = await startPolicy('igpo', config, clients);
  let step = resumed?.step ?? 0;
  let consumed = resumed?.dataConsumed ?? 0;
  const loss = rlMethodLoss({ method: 'grpo' });
  const schedule = {
    ...config.lr_schedule,
    peak: peakLearningRate(config),
    totalSteps: config.max_steps,
  };

  // 2. sync → episodes → turn advantages → update, every step
  const rewards: number[] = [];
  while (step < config.max_steps) {
    const sampler = await syncWeights(policy, service, step);
    const batch = batchIndices(rows.length, consumed, config.prompt_groups_per_step, config.seed);
    const groups = await Promise.all(
      batch.map((r, g) =>
        Promise.all(
          Array.from({ length: config.completions_per_prompt }, (_, i) =>
            playEpisode(
              sampler,
              renderer,
              rows[r] as Row,
              config,
              (config.seed * 1_000_003 + step * 1_009 + g * 101 + i) % 2 ** 31,
            ),
          ),
        ),
      ),
    );
    const lr = learningRateAt(schedule, step);
    const datums = groups.flatMap((g) => turnDatums(g, config.gamma));
    const out = await trainStep(policy, datums, loss, config.adam, lr);
    consumed += batch.length;
    step += 1;
    const episodes = groups.flat();
    const reward = episodes.reduce((s, e) => s + e.outcome, 0) / episodes.length;
    const gain =
      episodes.reduce((s, e) => s + e.gains.reduce((a, b) => a + b, 0), 0) / episodes.length;
    rewards.push(reward);
    await tracker.logMetrics(step, {
      'reward:mean': reward,
      'information_gain:mean': gain,
      ...(out ? { 'loss:mean': out.loss, ...out.metrics } : {}),
      'learning_rate:last': lr,
    });
    log.info({ step, reward, gain }, 'igpo step');
    await ckpt.saveOnInterval(config.dcp_save_interval, step, config.max_steps, consumed);
  }

  // 3. final checkpoint, promotion
  return { steps: step, rewards, ...(await ckpt.finish(step, consumed, config, resumed)) };
}

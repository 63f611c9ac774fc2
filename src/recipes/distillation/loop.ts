/**
 * The on-policy distillation loop: every step (1) hot-loads the student's weights into its
 * sampling deployment, (2) samples `completions_per_prompt` completions of each prompt, (3)
 * has the teacher deployment score every sampled token, (4) trains the student with the
 * importance-sampling loss on advantages teacher − student (src/losses/distillation). The
 * logged `reverse_kl:mean` (student sampling logprob − teacher logprob, per generated token)
 * is the KL to the teacher that the loop drives down.
 *
 * Sampled reverse KL only re-weights tokens the student samples: where the teacher's preferred
 * token is one a near-deterministic student never samples, every advantage is negative and the
 * updates flatten the student rather than move it to the teacher (the KL then stays flat or
 * rises). It suits a student whose support covers the teacher's choices.
 */
import { z } from 'zod';
import {
  alignCompletionLogprobs,
  buildDistillationDatums,
  DISTILLATION_RATIO_LOG_CAP,
  FIELDS,
  type LossDatum,
} from '../../losses/index.js';
import type { PromotedModel, SampledCompletion } from '../../sdk/index.js';
import { messagesSchema } from '../../tokenizers/index.js';
import { peakLearningRate } from '../kit/base-config.js';
import { startPolicy } from '../kit/checkpoints.js';
import type { RecipeClients } from '../kit/clients.js';
import { batchIndices, modelRenderer, readRows } from '../kit/data.js';
import { adamW } from '../optimizer.js';
import { syncWeights } from '../rl/steps.js';
import { learningRateAt } from '../schedule.js';
import type { DistillationConfig } from './config.js';
import { openTeacher } from './teacher.js';

export interface DistillationResult {
  steps: number;
  reverseKl: number[];
  resumedFrom?: string;
  model?: PromotedModel;
}

export async function run(
  config: DistillationConfig,
  clients: RecipeClients,
): Promise<DistillationResult> {
  const { service, tracker, log } = clients;

  // 1. prompts, the teacher deployment, the student restored from the log path
  const renderer = await modelRenderer(config.base_model);
  const rows = await readRows(config.dataset, z.object({ messages: messagesSchema }).passthrough());
  const prompts = rows.map((r) => renderer.renderGenerationPrompt(r.messages));
  const teacher = await openTeacher(
    clients.deployments,
    config.account,
    config.teacher_model,
    config.threads,
  );
  const { policy, ckpt, resumed } = await startPolicy('distillation', config, clients);
  let step = resumed?.step ?? 0;
  let consumed = resumed?.dataConsumed ?? 0;
  const schedule = {
    ...config.lr_schedule,
    peak: peakLearningRate(config),
    totalSteps: config.max_steps,
  };

  const reverseKl: number[] = [];
  while (step < config.max_steps) {
    // 2. the student samples from its current weights
    const sampler = await syncWeights(policy, service, step);
    const batch = batchIndices(
      prompts.length,
      consumed,
      config.prompt_groups_per_step,
      config.seed,
    );
    const groups = await Promise.all(
      batch.map((i, k) =>
        sampler.sampleWithTokens({
          promptTokens: prompts[i] as number[],
          n: config.completions_per_prompt,
          maxTokens: config.max_completion_tokens,
          temperature: config.temperature,
          logprobs: true,
          seed: (config.seed * 1_000_003 + step * 1_009 + k) % 2 ** 31,
        }),
      ),
    );
    const samples: SampledCompletion[] = groups.flat().filter((c) => c.completionLen > 0);

    // 3. the teacher scores the sampled tokens
    const teacherLps = await Promise.all(samples.map((c) => teacher.score(c.fullTokens)));
    const data: LossDatum[] = samples.map((c) => {
      const targets = c.fullTokens.slice(1);
      return {
        model_input: c.fullTokens.slice(0, -1),
        loss_fn_inputs: {
          [FIELDS.targetTokens]: targets,
          [FIELDS.weights]: targets.map((_, t) => (t >= c.promptLen - 1 ? 1 : 0)),
          [FIELDS.logprobs]: alignCompletionLogprobs(
            c.inferenceLogprobs ?? [],
            c.promptLen,
            c.fullTokens.length,
          ),
        },
      } as LossDatum;
    });
    const built = buildDistillationDatums(
      data,
      teacherLps,
      samples.map((c) => c.promptLen),
    );

    // 4. importance-sampling update toward the teacher
    const fb = await policy.forwardBackward(
      built.datums.map((d) => ({
        modelInput: d.model_input as number[],
        lossFnInputs: d.loss_fn_inputs as Record<string, number[]>,
      })),
      'importance_sampling',
      { ratio_log_cap: DISTILLATION_RATIO_LOG_CAP },
    );
    const lr = learningRateAt(schedule, step);
    const opt = await policy.optimStep(
      adamW({ ...config.adam, learningRate: lr }),
      'num_loss_tokens',
    );
    consumed += batch.length;
    step += 1;
    const kl = built.metrics['opd_sampled_reverse_kl:mean'] as number;
    reverseKl.push(kl);
    await tracker.logMetrics(step, {
      'reverse_kl:mean': kl,
      ...built.metrics,
      ...fb.metrics,
      'grad_norm:last': opt.gradNorm,
      'learning_rate:last': lr,
    });
    log.info({ step, reverseKl: kl }, 'distillation step');
    await ckpt.saveOnInterval(config.dcp_save_interval, step, config.max_steps, consumed);
  }

  // 5. final checkpoint, promotion
  return { steps: step, reverseKl, ...(await ckpt.finish(step, consumed, config, resumed)) };
}

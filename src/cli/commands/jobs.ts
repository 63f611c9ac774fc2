/**
 * `temper create sftj|dpoj|orpoj|rftj`: the managed-job flags of the spec (managed-jobs.md), sent
 * as the REST body in camelCase; `--job-id` becomes `?{singular}Id=`. Defaults and ranges are
 * the server's. `--wait` follows the job to its end and exits 1 if it failed or was cancelled.
 */
import type { Command } from 'commander';
import type { TemperApi } from '../api/client.js';
import { type Kind, kindOf } from '../api/kinds.js';
import { type Job, jobSchema } from '../api/schemas.js';
import { formatKeyValue, type OutputFormat, printResource } from '../output.js';
import { waitForJob } from '../wait.js';
import { type ApiFlags, apiAction, defined, integer, number, withApiFlags } from './common.js';

interface JobFlags extends ApiFlags {
  jobId?: string;
  wait?: boolean;
  [field: string]: unknown;
}

/** Flags every training job takes: [flag, REST field's parser, help]. */
function addTrainingFlags(cmd: Command): Command {
  return cmd
    .option(
      '--base-model <model>',
      'model to fine-tune (exactly one of this and --warm-start-from)',
    )
    .option('--warm-start-from <model>', 'a promoted model (or adapter) to continue from')
    .requiredOption('--dataset <dataset>', 'dataset id or name')
    .option('--output-model <id>', 'id of the model the job promotes (default: random)')
    .option('--job-id <id>', 'id of the job (default: random)')
    .option('--display-name <name>', 'display name')
    .option('--evaluation-dataset <dataset>', 'evaluation dataset (default: a split of --dataset)')
    .option('--max-context-length <n>', 'examples are cut at this many tokens', integer)
    .option('--batch-size <tokens>', 'tokens per optimizer step (sequences packed)', integer)
    .option('--epochs <n>', 'passes over the dataset (fractions allowed for SFT/DPO)', number)
    .option('--learning-rate <lr>', 'peak learning rate', number)
    .option('--learning-rate-warmup-steps <n>', 'linear warm-up steps', integer)
    .option('--gradient-accumulation-steps <n>', 'micro-batches per optimizer step', integer)
    .option('--lora-rank <r>', 'LoRA rank (0 = full parameter)', integer)
    .option('--training-shape <shape>', 'training shape name')
    .option('--mlflow-tracking-uri <url>', 'log params and per-step metrics to this MLflow server')
    .option('--mlflow-experiment-name <name>', 'MLflow experiment (default: temper)')
    .option('--mlflow-run-name <name>', 'MLflow run name (default: the job id)')
    .option('--checkpoint-frequency <steps>', 'save a resumable checkpoint every n steps', integer)
    .option('--seed <n>', 'data order seed (0 = derived from the job name)', integer)
    .option(
      '--base-dtype <dtype>',
      'frozen base weights in float32 (default) or bfloat16 (half the memory; LoRA only)',
    )
    .option('--recompute', "recompute each layer's activations in backward (less memory)")
    .option('--wait', 'follow the job until it ends, with a progress bar');
}

function addRftFlags(cmd: Command): Command {
  return cmd
    .requiredOption('--evaluator <evaluator>', 'evaluator id or name')
    .option('--chunk-size <n>', 'prompts per policy step (-1 = whole dataset)', integer)
    .option('--rl-loss-method <method>', 'grpo, dapo or gspo-token')
    .option('--rl-kl-beta <beta>', 'KL penalty (0 = the method default)', number)
    .option('--temperature <t>', 'rollout temperature', number)
    .option('--top-p <p>', 'rollout top-p', number)
    .option('--top-k <k>', 'rollout top-k (0 = off)', integer)
    .option('--response-candidates-count <n>', 'rollouts per prompt', integer)
    .option('--n <n>', 'same as --response-candidates-count', integer)
    .option('--max-tokens <n>', 'tokens per rollout', integer)
    .option('--max-concurrent-rollouts <n>', 'rollouts in flight', integer)
    .option('--rollout-timeout <duration>', 'per-rollout time limit, e.g. 60s')
    .option('--remote-server-url <url>', 'remote environment (POST /init)');
}

const NOT_BODY = new Set(['jobId', 'wait', 'apiUrl', 'apiKey', 'account', 'output']);

/** The REST body: every flag given, except the CLI's own. */
export function jobBody(flags: JobFlags): Record<string, unknown> {
  return defined(Object.fromEntries(Object.entries(flags).filter(([k]) => !NOT_BODY.has(k))));
}

export async function createJob(
  api: TemperApi,
  kind: Kind,
  body: Record<string, unknown>,
  jobId?: string,
): Promise<Job> {
  return api.request('POST', api.collectionPath(kind.collection), jobSchema, {
    body,
    ...(jobId ? { query: { [`${kind.singular}Id`]: jobId } } : {}),
  });
}

/** The end of a waited-for job: the resource (json) or a short summary (text). */
export function printJobEnd(job: Job, output: OutputFormat): void {
  if (output === 'json') {
    printResource(job, output);
    return;
  }
  const summary: Record<string, unknown> = {
    name: job.name,
    state: job.state,
    steps: job.jobProgress ? `${job.jobProgress.step}/${job.jobProgress.totalSteps}` : undefined,
    outputModel: job.state === 'JOB_STATE_FAILED' ? undefined : job.outputModel,
    error: job.status?.code === 'OK' ? undefined : job.status?.message,
  };
  process.stdout.write(formatKeyValue(defined(summary)));
}

export function jobSucceeded(job: Job): boolean {
  return job.state === 'JOB_STATE_COMPLETED' || job.state === 'JOB_STATE_EARLY_STOPPED';
}

export function addCreateCommand(program: Command): void {
  const create = program.command('create').description('create a managed fine-tuning job');
  const variants: [string, string, (c: Command) => Command][] = [
    ['sftj', 'supervised fine-tuning job', (c) => c],
    ['dpoj', 'DPO preference job', (c) => c.option('--beta <b>', 'DPO beta (0 < b < 0.5)', number)],
    [
      'orpoj',
      'ORPO preference job',
      (c) =>
        c.option('--orpo-lambda <l>', 'weight of the odds-ratio term (>= 0, default 1)', number),
    ],
    ['rftj', 'reinforcement fine-tuning job', addRftFlags],
  ];
  for (const [word, description, extra] of variants) {
    const kind = kindOf(word);
    withApiFlags(
      extra(addTrainingFlags(create.command(word).description(`create a ${description}`))),
    ).action(
      apiAction<JobFlags>(async ({ api, output }, _args, flags) => {
        const job = await createJob(api, kind, jobBody(flags), flags.jobId);
        if (!flags.wait) return printResource(job, output);
        const end = await waitForJob(api, kind, job.name);
        printJobEnd(end, output);
        if (!jobSucceeded(end)) process.exitCode = 1;
      }),
    );
  }
}

/**
 * `temper quickstart`: the README's main job on the embedded platform. It brings the stack
 * up (as `temper up` does, in this process, on free ports and a fresh data directory), then
 * walks the path a user takes with the CLI, through the same REST API:
 *
 *   dataset create   the bundled sure-answers conversations as a user dataset
 *   create sftj      full fine-tuning of the bundled base model, followed with a progress bar;
 *                    the job promotes its output model itself
 *   deployment       the base model and the fine-tuned model, each on a local replica
 *   chat             the same questions to both (before / after)
 *
 * and stops the stack. Nothing is downloaded: the model, the dataset and the Temporal dev
 * server (built once by scripts/install-temporal.sh) are on the machine.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { BUNDLED_MODEL, catalogDatasetPath, DEMO_DATASET } from '../catalog/bundled.js';
import { resolveTemporalBinary } from '../orchestration/temporal-binary.js';
import { TemperApi } from './api/client.js';
import { kindOf } from './api/kinds.js';
import { deleteResource } from './api/resources.js';
import { createDeployment } from './commands/deployments.js';
import { createJob, jobSucceeded } from './commands/jobs.js';
import { createDataset } from './commands/resources.js';
import { platformSettings } from './stack/settings.js';
import { type Stack, startStack } from './stack/up.js';
import { waitForJob } from './wait.js';

export interface QuickstartOptions {
  /** Keep everything here (default: a temporary directory, removed at the end). */
  dataDir?: string;
  epochs: number;
  /** Tokens per optimizer step. */
  batchSize: number;
  learningRate: number;
  threads?: number;
}

/**
 * About 100 steps of ~8 conversations at 5e-4, full parameter (the demo's budget): enough
 * for the style to settle on every answer; with half the steps some answers still drift to
 * the dataset's most frequent capital.
 */
export const QUICKSTART_DEFAULTS: QuickstartOptions = {
  epochs: 5,
  batchSize: 640,
  learningRate: 5e-4,
};

export const QUICKSTART_PROMPTS = [
  'What is the capital of Peru?',
  'What is the capital of Japan?',
  'What color is the snow?',
];

export interface QuickstartResult {
  job: Record<string, unknown>;
  before: string[];
  after: string[];
  seconds: number;
}

const chatResponseSchema = z.object({
  choices: z.array(z.object({ message: z.object({ content: z.string().nullable() }) })).min(1),
});

/** One greedy chat answer from a deployment's OpenAI-compatible gateway. */
export async function chat(gatewayUrl: string, question: string, apiKey: string): Promise<string> {
  // the gateway takes a key of the deployment's account (it asks the control plane)
  const res = await fetch(`${gatewayUrl}/inference/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({
      messages: [{ role: 'user', content: question }],
      temperature: 0,
      max_tokens: 64,
    }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`chat completion failed (HTTP ${res.status}): ${text}`);
  return (chatResponseSchema.parse(JSON.parse(text)).choices[0]!.message.content ?? '').trim();
}

function quickstartSettings(dataDir: string) {
  const url = (sub: string) => pathToFileURL(join(dataDir, sub)).href;
  // Everything under dataDir and on free ports, whatever TEMPER_* says: the quickstart must
  // neither touch nor collide with a `temper up` the user may be running.
  return platformSettings({
    dataDir,
    storeUrl: `sqlite://${join(dataDir, 'temper.db')}`,
    artifactsUrl: url('artifacts'),
    checkpointsUrl: url('checkpoints'),
    trainersDir: join(dataDir, 'trainers'),
    temporalAddress: '127.0.0.1:0',
    apiPort: 0,
  });
}

/** Answers of a deployment of `model` to every prompt; the deployment is deleted after. */
async function answers(api: TemperApi, model: string, id: string, threads?: number) {
  const dep = await createDeployment(api, model, {
    deploymentId: id,
    ...(threads ? { threads } : {}),
  });
  try {
    if (dep.state !== 'READY' || !dep.gatewayUrl)
      throw new Error(`deployment ${dep.name} is ${dep.state}: ${JSON.stringify(dep.status)}`);
    const out: string[] = [];
    for (const q of QUICKSTART_PROMPTS)
      out.push(await chat(dep.gatewayUrl, q, api.connection.apiKey));
    return out;
  } finally {
    await deleteResource(api, kindOf('deployment'), id).catch(() => undefined);
  }
}

async function journey(
  stack: Stack,
  opts: QuickstartOptions,
  log: (line: string) => void,
): Promise<Omit<QuickstartResult, 'seconds'>> {
  const api = new TemperApi(stack.credentials);
  const dataset = await createDataset(api, 'sure-answers', catalogDatasetPath(DEMO_DATASET.name));
  log(`dataset  ${dataset.name} (${String(dataset.exampleCount)} examples, uploaded)`);
  const sftj = kindOf('sftj');
  const created = await createJob(
    api,
    sftj,
    {
      baseModel: BUNDLED_MODEL.name,
      dataset: 'sure-answers',
      outputModel: 'sure-answers-model',
      loraRank: 0,
      epochs: opts.epochs,
      batchSize: opts.batchSize,
      learningRate: opts.learningRate,
    },
    'quickstart-sft',
  );
  log(`job      ${created.name} (full fine-tuning of ${BUNDLED_MODEL.name})`);
  const job = await waitForJob(api, sftj, created.name);
  if (!jobSucceeded(job))
    throw new Error(`${job.name} ended ${job.state}: ${job.status?.message ?? ''}`);
  log(`model    ${job.outputModel} (promoted by the job)`);
  log('sampling both models through deployments (one local replica each)...');
  const before = await answers(api, BUNDLED_MODEL.name, 'base-model', opts.threads);
  const after = await answers(api, job.outputModel!, 'fine-tuned', opts.threads);
  return { job, before, after };
}

export async function runQuickstart(
  opts: QuickstartOptions,
  log: (line: string) => void = console.log,
): Promise<QuickstartResult> {
  const started = Date.now();
  resolveTemporalBinary(); // fails here, with the command that builds it, if it is missing
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'temper-quickstart-')));
  const stack = await startStack({
    settings: quickstartSettings(dataDir),
    ...(opts.threads ? { threads: opts.threads } : {}),
    onStep: (line) => log(`stack    ${line}`),
  });
  let result: Omit<QuickstartResult, 'seconds'>;
  try {
    result = await journey(stack, opts, log);
  } finally {
    await stack.close();
    if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
  }
  QUICKSTART_PROMPTS.forEach((q, i) => {
    log(`\nUser: ${q}`);
    log(`  before: ${result.before[i]}`);
    log(`  after:  ${result.after[i]}`);
  });
  const seconds = (Date.now() - started) / 1000;
  log(
    `\nquickstart done in ${seconds.toFixed(0)} s; the stack is stopped${opts.dataDir ? ` (data kept in ${opts.dataDir})` : ''}.`,
  );
  return { ...result, seconds };
}

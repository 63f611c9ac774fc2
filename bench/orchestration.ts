/**
 * bench:orchestration — what the platform costs on top of the training it orchestrates.
 *
 * A 100-step SFT job on the bundled model through the platform (Temporal dev server,
 * SQLite store, a worker host, a local trainer pod; from starting the workflow to the
 * promoted model) against the anchor: the same 100 steps driven directly through the SDK on
 * the same pod configuration (launch the pod, the same batches in the same order, export,
 * promote). Each optimizer step is 8 micro-batches of one example (batchSize 1 token packs one
 * sequence per micro-batch), over 800 training examples: exactly 100 steps; both score the
 * 88 held-out examples at the end.
 *
 *   npm run bench:orchestration [-- --rounds 3]
 */

import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import {
  BUNDLED_MODEL,
  catalogDatasetPath,
  catalogModelDir,
  DEMO_DATASET,
} from '../src/catalog/bundled.js';
import { openObjectStore } from '../src/checkpoints/object-store/index.js';
import { promoteCheckpoint } from '../src/checkpoints/promotion.js';
import { startDevServer } from '../src/orchestration/dev-server.js';
import { buildSupervisedData } from '../src/recipes/index.js';
import { ServiceClient } from '../src/sdk/service-client.js';
import { openStore } from '../src/store/index.js';
import { LocalProcessLauncher } from '../src/trainer/launcher/index.js';
import {
  learningRateAt,
  modelRenderer,
  startTemperWorker,
  TemporalOrchestrator,
  type TrainingPlan,
  workflowIdOf,
} from '../src/workflows/index.js';
import { median } from './support/common.js';

const STEPS = 100;
const MICRO = 8;
const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1] ?? 1) || 1;
const log = (line: string) => process.stderr.write(`${line}\n`);

/**
 * 888 examples (the bundled SFT set repeated): the job holds out 10% (88) for evaluation and
 * trains on 800, 100 steps of 8 one-example micro-batches.
 */
const ROWS = 888;
function datasetText(): string {
  const lines = readFileSync(catalogDatasetPath(DEMO_DATASET.name), 'utf8').trim().split('\n');
  return Array.from({ length: ROWS }, (_, i) => lines[i % lines.length]).join('\n');
}

const JOB = {
  batchSize: 1,
  gradientAccumulationSteps: MICRO,
  epochs: 1,
  learningRate: 5e-4,
  loraRank: 0,
  seed: 1,
};

async function main() {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const dir = await mkdtemp(join(tmpdir(), 'temper-bench-orch-'));
  const server = await startDevServer();
  const store = openStore(`sqlite://${join(dir, 'temper.db')}`);
  await store.migrate();
  const artifacts = await openObjectStore(pathToFileURL(join(dir, 'artifacts')).href);
  const checkpoints = await openObjectStore(pathToFileURL(join(dir, 'checkpoints')).href);
  const launcher = new LocalProcessLauncher({
    stateDir: join(dir, 'trainers'),
    checkpointUrl: checkpoints.url,
  });
  const worker = await startTemperWorker({
    address: server.address,
    namespace: server.namespace,
    hostId: 'bench',
    store,
    artifacts,
    checkpoints,
    launcher,
    threads: 1,
  });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: server.namespace });
  const orchestrator = new TemporalOrchestrator(client);
  const text = datasetText();
  await artifacts.put('accounts/bench/datasets/sft800/data.jsonl', text);

  const platformRun = async (round: number) => {
    const ref = {
      collection: 'supervisedFineTuningJobs' as const,
      account: 'bench',
      id: `platform-${round}`,
    };
    await store.create(ref.collection, ref.account, ref.id, {
      state: 'JOB_STATE_PENDING',
      baseModel: BUNDLED_MODEL.name,
      dataset: 'accounts/bench/datasets/sft800',
      outputModel: `accounts/bench/models/platform-${round}`,
      ...JOB,
    });
    const t0 = performance.now();
    await orchestrator.start(ref);
    const result = await client.workflow.getHandle(workflowIdOf(ref)).result();
    const seconds = (performance.now() - t0) / 1000;
    if (result.steps !== STEPS)
      throw new Error(`the platform ran ${result.steps} steps, not ${STEPS}`);
    return seconds;
  };

  const directRun = async (round: number) => {
    const t0 = performance.now();
    const jobId = `direct-${round}`;
    await launcher.launch({
      baseModel: BUNDLED_MODEL.name,
      loraRank: 0,
      jobId,
      account: 'bench',
      checkpointUrl: checkpoints.url,
      threads: 1,
    });
    const service = ServiceClient.fromConfig(
      {
        baseModel: BUNDLED_MODEL.name,
        trainerJobId: jobId,
        account: 'bench',
        checkpointUrl: checkpoints.url,
      },
      { launcher },
    );
    const training = await service.createTrainingClient();
    const plan = {
      method: 'sft',
      maxContextLength: 2048,
      ...JOB,
      batchTokens: JOB.batchSize,
      warmupSteps: 0,
    } as unknown as TrainingPlan;
    const data = buildSupervisedData(
      plan,
      text,
      await modelRenderer(catalogModelDir(BUNDLED_MODEL.name)),
    );
    if (data.steps.length !== STEPS) throw new Error(`direct plan has ${data.steps.length} steps`);
    for (let step = 0; step < STEPS; step++) {
      for (const batch of data.steps[step]!) await training.forwardBackward(batch, 'cross_entropy');
      await training.optimStep(
        {
          learningRate: learningRateAt(plan, step),
          beta1: 0.9,
          beta2: 0.999,
          weightDecay: 0,
          gradClipNorm: 1,
        },
        'num_loss_tokens',
      );
    }
    // The job scores its held-out examples at the end; so does the anchor.
    for (let i = 0; i < data.eval.length; i += MICRO)
      await training.forward(data.eval.slice(i, i + MICRO), 'cross_entropy');
    const saved = await training.saveWeightsForSampler('final', { checkpointType: 'base' });
    await promoteCheckpoint(checkpoints, { name: saved.name, outputModelId: `direct-${round}` });
    await service.close();
    await launcher.stop(jobId);
    return (performance.now() - t0) / 1000;
  };

  const platformTimes: number[] = [];
  const directTimes: number[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      directTimes.push(await directRun(r));
      log(`round ${r + 1}: direct ${directTimes.at(-1)!.toFixed(2)} s`);
      platformTimes.push(await platformRun(r));
      log(`round ${r + 1}: platform ${platformTimes.at(-1)!.toFixed(2)} s`);
    }
  } finally {
    await worker.stop();
    await connection.close();
    await store.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const platform_s = median(platformTimes);
  const direct_s = median(directTimes);
  process.stdout.write(
    `${JSON.stringify({ bench: 'orchestration', steps: STEPS, platform_s: +platform_s.toFixed(3), direct_s: +direct_s.toFixed(3), overhead: +(platform_s / direct_s).toFixed(3) })}\n`,
  );
}

await main();

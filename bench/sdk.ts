// bench:sdk — what driving a trainer from the seed's Python SDK costs against temper's own
// TypeScript SDK, on the ~25M-parameter model (random weights written as an HF directory):
//   - python_over_ts: one training step (forward_backward cross_entropy + optim_step, batch
//     4x128, awaiting each call) through the unmodified `fireworks-ai[training]` SDK →
//     control-plane port → Tinker-wire gateway (JSON, futures, retrieve_future) → gRPC → pod,
//     over the same step through the TypeScript SDK straight over gRPC to the same pod
//     (goal ≤ 1.10).
//   - sampler_python_over_ts: DeploymentSampler tokens/s over the TypeScript sampler's on one
//     deployment of the same model (bench/sdk-sampler.ts; goal ≥ 0.9).
// Rounds of 20 steps alternate between the two sides (Python, TS, TS, Python, ...) on one pod
// (one model each), so drift and contention hit both; medians of the per-step times are
// compared. Last stdout line:
//   {"bench":"sdk","python_over_ts":..,"sampler_python_over_ts":..}
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { writeHfModelDir } from '../src/checkpoints/hf-model-dir.js';
import { openObjectStore } from '../src/checkpoints/object-store/index.js';
import {
  bootstrapAccount,
  createControlPlane,
  type JobOrchestrator,
} from '../src/control-plane/index.js';
import { initialWeights } from '../src/engine/init.js';
import { TransformerModel } from '../src/engine/model.js';
import { ServiceClient, type TrainingDatum } from '../src/sdk/index.js';
import { openStore } from '../src/store/index.js';
import { LocalProcessLauncher } from '../src/trainer/launcher/index.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { pythonEnv } from '../test/support/python-env.js';
import { samplerSection } from './sdk-sampler.js';
import { LLAMA_25M, median } from './support/common.js';

const log = (line: string) => process.stdout.write(`${line}\n`);
const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
const args = new Set(process.argv.slice(2));
/** Pairs of rounds: (Python, TS) then (TS, Python). */
const ROUNDS = args.has('--quick') ? 1 : 2;
const STEPS = 20;
const BATCH = 4;
const SEQ = 128;
const PROMPT = 16;
const THREADS = Math.min(2, availableParallelism());
const CONFIG = LLAMA_25M;

/**
 * The gateway's control plane needs no orchestration here: the trainer row is written as a
 * workflow would write it once the pod serves, so only the gateway path is on the clock.
 */
const noOrchestration: JobOrchestrator = {
  start: async () => {
    throw new Error('bench:sdk starts no jobs');
  },
  cancel: async () => {},
  resume: async () => {
    throw new Error('bench:sdk resumes no jobs');
  },
  promote: async () => {
    throw new Error('bench:sdk promotes nothing');
  },
};

function makeBatch(): number[][] {
  const u = seededRandom(77);
  return Array.from({ length: BATCH }, () =>
    Array.from({ length: SEQ + 1 }, () => Math.floor(u() * CONFIG.vocabSize)),
  );
}

/** The Python SDK side as a child process that runs rounds on request. */
async function pythonSide(setup: Record<string, unknown>) {
  const env = pythonEnv('fireworks-sdk');
  const child = spawn(env.python, [join(import.meta.dirname, 'sdk_steps.py')], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, TINKER_TELEMETRY: '0' },
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error('the Python SDK side exited early (see its stderr above)');
    return JSON.parse(value as string) as Record<string, unknown>;
  };
  child.stdin!.write(`${JSON.stringify(setup)}\n`);
  await next();
  return {
    async round(steps: number): Promise<number[]> {
      child.stdin!.write(`${JSON.stringify({ steps })}\n`);
      return (await next()).seconds as number[];
    },
    close() {
      child.stdin!.end();
    },
  };
}

/** Section 1: training steps, Python SDK through the gateway over the TS SDK over gRPC. */
async function trainingSection(dir: string): Promise<number> {
  await mkdir(dir, { recursive: true });
  const init = new TransformerModel(CONFIG, { threads: 1 });
  const base = initialWeights(init, 1234, { normJitter: 0.1 });
  const params = [...base.values()].reduce((n, t) => n + t.data.length, 0);
  const modelDir = join(dir, 'model-25m');
  await writeHfModelDir(modelDir, { config: CONFIG, tensors: base });
  log(
    `model: ${params.toLocaleString('en-US')} parameters; batch ${BATCH}x${SEQ}; ${THREADS} engine threads; ${ROUNDS * 2} rounds of ${STEPS} steps per side`,
  );
  const store = openStore(`sqlite://${join(dir, 'temper.db')}`);
  await store.migrate();
  const checkpoints = await openObjectStore(pathToFileURL(join(dir, 'checkpoints')).href);
  const artifacts = await openObjectStore(pathToFileURL(join(dir, 'artifacts')).href);
  const cp = createControlPlane({
    store,
    orchestrator: noOrchestration,
    artifacts,
    checkpointUrl: checkpoints.url,
  });
  const launcher = new LocalProcessLauncher({
    stateDir: join(dir, 'jobs'),
    env: { ...process.env, TEMPER_LOG_LEVEL: 'warn' },
  });
  let service: ServiceClient | undefined;
  let python: Awaited<ReturnType<typeof pythonSide>> | undefined;
  try {
    const url = await cp.listen(0, '127.0.0.1');
    const { apiKey } = await bootstrapAccount(store, 'bench');
    const pod = await launcher.launch({
      baseModel: modelDir,
      jobId: 'bench-sdk',
      account: 'bench',
      threads: THREADS,
      checkpointUrl: checkpoints.url,
      inactivityTimeoutMs: 0,
    });
    await store.create('rlorTrainerJobs', 'bench', pod.jobId, {
      state: 'JOB_STATE_RUNNING',
      baseModel: modelDir,
      loraRank: 0,
      trainerAddress: pod.address,
      trainerToken: pod.token,
    });
    const tokens = makeBatch();
    service = ServiceClient.fromConfig(
      { baseModel: modelDir, loraRank: 0, threads: THREADS, trainerJobId: pod.jobId },
      { launcher },
    );
    const ts = await service.createTrainingClient();
    const batch: TrainingDatum[] = tokens.map((t) => ({
      modelInput: { chunks: [{ type: 'encoded_text' as const, tokens: t.slice(0, -1) }] },
      lossFnInputs: {
        target_tokens: t.slice(1),
        weights: t.slice(1).map((_, j) => (j >= PROMPT ? 1 : 0)),
      },
    }));
    const adam = { learningRate: 1e-5 };
    const tsRound = async (steps: number) => {
      const seconds: number[] = [];
      for (let i = 0; i < steps; i++) {
        const t0 = performance.now();
        await ts.forwardBackward(batch, 'cross_entropy');
        await ts.optimStep(adam, 'num_loss_tokens');
        seconds.push((performance.now() - t0) / 1000);
      }
      return seconds;
    };
    python = await pythonSide({
      base_url: `${url}/training/v1/rlorTrainerJobs/bench/${pod.jobId}`,
      api_key: apiKey,
      base_model: modelDir,
      batch: tokens,
      prompt_len: PROMPT,
    });
    // Warm-up round of each (connections, first allocations), untimed.
    await python.round(2);
    await tsRound(2);
    const py: number[] = [];
    const tsTimes: number[] = [];
    const loads: number[] = [];
    // Which side goes first alternates, so neither always follows the other's allocations.
    for (let r = 0; r < ROUNDS * 2; r++) {
      if (r % 2 === 0) {
        py.push(...(await python.round(STEPS)));
        tsTimes.push(...(await tsRound(STEPS)));
      } else {
        tsTimes.push(...(await tsRound(STEPS)));
        py.push(...(await python.round(STEPS)));
      }
      loads.push(loadavg()[0]!);
    }
    const show = (name: string, xs: number[]) =>
      log(
        `${name.padEnd(22)} median ${median(xs).toFixed(4)} s/step (min ${Math.min(...xs).toFixed(4)}, max ${Math.max(...xs).toFixed(4)})`,
      );
    show('python sdk → gateway', py);
    show('ts sdk → grpc', tsTimes);
    const noisy = Math.max(...loads) > availableParallelism() + 0.5;
    log(
      `load average during the run: ${loads.map((l) => l.toFixed(2)).join(' ')}${noisy ? ' — NOISY: other processes shared the cores; the ratio is indicative only' : ''}`,
    );
    return median(py) / median(tsTimes);
  } finally {
    python?.close();
    await service?.close().catch(() => undefined);
    await launcher.stop('bench-sdk').catch(() => undefined);
    await cp.close();
    await store.close();
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'temper-bench-sdk-'));
  try {
    log(`bench:sdk — ${availableParallelism()} cores, load average ${loadavg()[0]!.toFixed(2)}`);
    const pythonOverTs = await trainingSection(join(dir, 'training'));
    const samplerPythonOverTs = await samplerSection(
      join(dir, 'sampler'),
      {
        rounds: args.has('--quick') ? 2 : 6,
        requests: 8,
        maxTokens: 32,
        concurrency: 4,
        threads: THREADS,
      },
      log,
    );
    log(
      JSON.stringify({
        bench: 'sdk',
        python_over_ts: round(pythonOverTs),
        sampler_python_over_ts: round(samplerPythonOverTs),
      }),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();

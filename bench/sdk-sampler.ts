// bench:sdk, sampler half: DeploymentSampler tokens/s (the unmodified Python SDK, streamed
// token-in completions through the control-plane port's /inference/v1 route) over the
// TypeScript sampler's (src/sdk/deployment-sampler.ts, JSON completions straight to the
// deployment's gateway, which is how temper's own SDK samples), on the same deployment of the
// ~25M-parameter model in the same run. Each round is R requests of T tokens (ignore_eos, so
// every request generates exactly T) with at most C in flight, temperature 1 and logprobs;
// rounds alternate between the two sides and the ratio is of the median tokens/s.
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
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
import { DeploymentRegistry } from '../src/deployments/index.js';
import { initialWeights } from '../src/engine/init.js';
import { TransformerModel } from '../src/engine/model.js';
import { DeploymentSampler, FixedConcurrencyController } from '../src/sdk/index.js';
import { openStore } from '../src/store/index.js';
import { byteTokenizerFiles } from '../src/tokenizers/byte-hf-files.js';
import { pythonEnv } from '../test/support/python-env.js';
import { LLAMA_25M, median } from './support/common.js';

export interface SamplerSettings {
  rounds: number;
  requests: number;
  maxTokens: number;
  concurrency: number;
  threads: number;
}

const noOrchestration: JobOrchestrator = {
  start: async () => {
    throw new Error('the sampler bench starts no jobs');
  },
  cancel: async () => {},
  resume: async () => {
    throw new Error('the sampler bench resumes no jobs');
  },
  promote: async () => {
    throw new Error('the sampler bench promotes nothing');
  },
};

async function pythonSampler(setup: Record<string, unknown>) {
  const env = pythonEnv('fireworks-sdk');
  const child = spawn(env.python, [join(import.meta.dirname, 'sdk_sampler.py')], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, TINKER_TELEMETRY: '0' },
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error('the Python sampler exited early (see its stderr above)');
    return JSON.parse(value as string) as { seconds: number; tokens: number };
  };
  child.stdin!.write(`${JSON.stringify(setup)}\n`);
  await next();
  return {
    async round(requests: number, maxTokens: number) {
      child.stdin!.write(`${JSON.stringify({ requests, max_tokens: maxTokens })}\n`);
      return next();
    },
    close() {
      child.stdin!.end();
    },
  };
}

/** Returns python tokens/s over TypeScript tokens/s (medians over the rounds). */
export async function samplerSection(
  dir: string,
  s: SamplerSettings,
  log: (line: string) => void,
): Promise<number> {
  await mkdir(dir, { recursive: true });
  const init = new TransformerModel(LLAMA_25M, { threads: 1 });
  const modelDir = join(dir, 'model-25m');
  await writeHfModelDir(modelDir, {
    config: LLAMA_25M,
    tensors: initialWeights(init, 99, { normJitter: 0.1 }),
    files: byteTokenizerFiles(LLAMA_25M.maxPositions),
  });
  const store = openStore(`sqlite://${join(dir, 'temper.db')}`);
  await store.migrate();
  const registry = new DeploymentRegistry(undefined, { openGateways: true });
  const cp = createControlPlane({
    store,
    orchestrator: noOrchestration,
    artifacts: await openObjectStore(pathToFileURL(join(dir, 'artifacts')).href),
    checkpointUrl: (await openObjectStore(pathToFileURL(join(dir, 'checkpoints')).href)).url,
    deployments: registry,
  });
  let python: Awaited<ReturnType<typeof pythonSampler>> | undefined;
  try {
    const url = await cp.listen(0, '127.0.0.1');
    const { apiKey } = await bootstrapAccount(store, 'bench');
    const d = await registry.create({
      account: 'bench',
      deploymentId: 'sampler',
      baseModel: 'accounts/bench/models/llama-25m',
      baseModelDir: modelDir,
      hotLoad: { bucketUrl: pathToFileURL(join(dir, 'bucket')).href },
      minReplicaCount: 1,
      maxReplicaCount: 1,
      replica: { threads: s.threads, maxConcurrent: s.concurrency },
    });
    if (d.state !== 'READY') throw new Error(`deployment ${d.state}: ${d.status.reason}`);
    const prompt = Array.from({ length: 32 }, (_, i) => 65 + (i % 26));
    log(
      `sampler: ${s.rounds} rounds per side of ${s.requests} requests x ${s.maxTokens} tokens, ${s.concurrency} in flight, replica ${s.threads} threads`,
    );
    const ts = new DeploymentSampler({
      inferenceUrl: d.gatewayUrl as string,
      deployment: d.name,
      concurrencyController: new FixedConcurrencyController(s.concurrency),
    });
    const tsRound = async () => {
      const t0 = performance.now();
      const done = await ts.sampleWithTokens({
        promptTokens: prompt,
        n: s.requests,
        maxTokens: s.maxTokens,
        temperature: 1,
        logprobs: true,
        ignoreEos: true,
      });
      const seconds = (performance.now() - t0) / 1000;
      return { seconds, tokens: done.reduce((n, c) => n + c.completionLen, 0) };
    };
    python = await pythonSampler({
      inference_url: url,
      api_key: apiKey,
      model: d.name,
      prompt,
      concurrency: s.concurrency,
    });
    // warm-up (connections, first sessions), untimed
    await python.round(s.concurrency, 8);
    await tsRound();
    const py: number[] = [];
    const tsRates: number[] = [];
    for (let r = 0; r < s.rounds; r++) {
      // alternate which side goes first, so drift in the machine's load hits both alike
      const pyFirst = r % 2 === 0;
      const first = pyFirst ? await python.round(s.requests, s.maxTokens) : await tsRound();
      const second = pyFirst ? await tsRound() : await python.round(s.requests, s.maxTokens);
      const [p, t] = pyFirst ? [first, second] : [second, first];
      for (const [what, x] of [
        ['python', p],
        ['ts', t],
      ] as const)
        if (x.tokens !== s.requests * s.maxTokens)
          throw new Error(
            `${what} round generated ${x.tokens} tokens, not ${s.requests * s.maxTokens}`,
          );
      py.push(p.tokens / p.seconds);
      tsRates.push(t.tokens / t.seconds);
    }
    const show = (name: string, xs: number[]) =>
      log(
        `${name.padEnd(34)} median ${median(xs).toFixed(1)} tok/s (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`,
      );
    show('python DeploymentSampler → cp port', py);
    show('ts DeploymentSampler → gateway', tsRates);
    return median(py) / median(tsRates);
  } finally {
    python?.close();
    await registry.close();
    await cp.close();
    await store.close();
  }
}

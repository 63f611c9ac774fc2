// RFT as eval-protocol users run it, end to end on the real platform (Temporal, worker, trainer
// pods, deployments, the control plane over HTTP) with eval-protocol 0.3.33 unmodified from its
// pinned venv: an eval-protocol remote environment (FastAPI + FireworksTracingHttpHandler)
// completing the rollouts of an RFT job; `ep local-test` on the math evaluator's folder,
// rolled out against a temper deployment.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmod, cp, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxSettings } from '../../src/evaluators/index.js';
import { workflowIdOf } from '../../src/workflows/types.js';
import { wheelhouse } from '../support/evaluators.js';
import { waitFor } from '../support/platform.js';
import { pythonEnv } from '../support/python-env.js';
import { type RestStack, startRestStack } from '../support/rest-stack.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'eval-protocol');
const BASE_MODEL = 'accounts/temper/models/byte-lm-3m';
const run = promisify(execFile);
const ep = pythonEnv('eval-protocol');

type Json = Record<string, unknown>;

let stack: RestStack;
let work: string;

beforeAll(async () => {
  const wheels = wheelhouse('eval-protocol');
  work = await mkdtemp(join(tmpdir(), 'temper-ep-e2e-'));
  // The evaluator sandbox's own uid must reach its work directory inside.
  await chmod(work, 0o711);
  // Python evaluator environments come from the wheelhouse setup.sh fills: nothing downloads.
  stack = await startRestStack({
    platform: {
      evaluatorSandbox: sandboxSettings({
        workDir: join(work, 'evaluators'),
        envDir: join(dirname(dirname(wheels)), 'test-evaluator-envs'),
        pipArgs: ['--no-index', '--find-links', wheels],
        buildSeconds: 1800,
      }),
      // the remote environments run on loopback: the operator's allowance, given explicitly
      outbound: { allowPrivateNetworks: true },
    },
  });
}, 120_000);

afterAll(async () => {
  await stack?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

const call = (method: string, path: string, body?: unknown) => stack.call(method, path, body);
const uploadDataset = (id: string, rows: unknown[]) =>
  stack.uploadDataset(id, rows.map((r) => JSON.stringify(r)).join('\n'));

const waitForJob = (path: string, timeoutMs = 400_000) =>
  waitFor(
    `${path} to end`,
    async () => {
      const { json } = await call('GET', path);
      return /COMPLETED|FAILED|CANCELLED|EARLY_STOPPED/.test(String(json.state)) ? json : undefined;
    },
    timeoutMs,
  );

/** The environment a user sets: their key, the platform's URL; nothing is downloaded. */
const userEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH,
  HOME: work,
  FIREWORKS_API_KEY: stack.keys.acme,
  FIREWORKS_API_BASE: stack.base,
  LITELLM_LOCAL_MODEL_COST_MAP: 'True',
  ...extra,
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The math questions the bundled model was pretrained on (`User: What is 2 + 3?`). */
const questions = (pairs: [number, number][]) =>
  pairs.map(([a, b]) => ({
    messages: [{ role: 'user', content: `What is ${a} + ${b}?` }],
    ground_truth: String(a + b),
  }));

async function epCli(args: string[], cwd: string, extra: NodeJS.ProcessEnv = {}) {
  try {
    const r = await run(ep.bin('ep'), args, { cwd, env: userEnv(extra), timeout: 300_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, out: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('eval-protocol create rft', () => {
  it('uploads the Python evaluator and the dataset, and the job trains until its reward rises', async () => {
    const project = join(work, 'create-rft', 'math-rft');
    await cp(join(FIXTURES, 'math-rft'), project, { recursive: true });
    const r = await epCli(
      ['create', 'rft', '--yes', '--skip-validation', '--base-model', BASE_MODEL]
        .concat(['--output-model', 'math-rft', '--job-id', 'math-rft', '--epochs', '4'])
        .concat(['--lora-rank', '16', '--learning-rate', '5e-4', '--chunk-size', '4'])
        .concat(['--response-candidates-count', '8', '--max-output-tokens', '16'])
        .concat(['--temperature', '0.7']),
      project,
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('✅ Successfully uploaded evaluator: test-math-rft-test-math-rft');
    expect(r.out).toContain('✅ Evaluator is ACTIVE and ready!');
    expect(r.out).toContain(
      '✅ Created Reinforcement Fine-tuning Job: accounts/acme/reinforcementFineTuningJobs/math-rft',
    );
    const job = await waitForJob('/v1/accounts/acme/reinforcementFineTuningJobs/math-rft', 900_000);
    expect(job.state, JSON.stringify(job.status)).toBe('JOB_STATE_COMPLETED');
    const metrics = await stack.platform.store.listMetrics(
      workflowIdOf({ collection: 'reinforcementFineTuningJobs', account: 'acme', id: 'math-rft' }),
    );
    // 8 prompts in chunks of 4, 4 epochs: 8 steps of 32 rollouts, each scored by the
    // uploaded Python function in its sandbox.
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(metrics.every((m) => m.values['rollouts:sum'] === 32)).toBe(true);
    expect(metrics.every((m) => m.values['valid:mean'] === 1)).toBe(true);
    const reward = metrics.map((m) => Number(m.values['reward:mean']));
    expect(mean(reward.slice(-2))).toBeGreaterThan(mean(reward.slice(0, 2)) + 0.1);
    const rollouts = (
      await stack.platform.artifacts.get(
        'accounts/acme/reinforcementFineTuningJobs/math-rft/rollouts/step-000008.jsonl',
      )
    )
      .toString()
      .split('\n')
      .map((l) => JSON.parse(l) as { reason: string });
    expect(rollouts.every((x) => /expected \d+$/.test(x.reason))).toBe(true);
    const model = await call('GET', '/v1/accounts/acme/models/math-rft');
    expect(model.json).toMatchObject({ kind: 'HF_PEFT_ADDON', state: 'READY' });
    console.log(
      `eval-protocol create rft: reward by step ${reward.map((x) => x.toFixed(3)).join(' ')}`,
    );
  }, 1_200_000);
});

describe('an eval-protocol remote environment', () => {
  let server: ChildProcess | undefined;
  afterAll(() => {
    server?.kill('SIGTERM');
  });

  it('completes the rollouts of an RFT step through /init, the traced model URL and its logs', async () => {
    const port = await freePort();
    let output = '';
    server = spawn(
      ep.python,
      ['-m', 'uvicorn', 'server:app', '--host', '127.0.0.1', '--port', String(port)],
      {
        cwd: join(FIXTURES, 'remote-server'),
        // Where a FireworksTracingHttpHandler sends its records: this platform, with the key.
        env: userEnv({ FW_TRACING_GATEWAY_BASE_URL: stack.base }),
      },
    );
    server.stdout?.on('data', (d: Buffer) => (output += d));
    server.stderr?.on('data', (d: Buffer) => (output += d));
    await waitFor(
      'the remote server to listen',
      async () => (/Uvicorn running/.test(output) ? true : undefined),
      60_000,
    );
    await uploadDataset('remote-math', [
      ...questions([
        [1, 2],
        [2, 2],
      ]),
      { messages: [{ role: 'user', content: 'FAIL: What is 3 + 3?' }], ground_truth: '6' },
    ]);
    const evaluator = await call('POST', '/v1/accounts/acme/evaluators', {
      evaluatorId: 'last-number',
      evaluator: {
        sourceFilename: 'score.mjs',
        source:
          'export default ({ completion, groundTruth }) => { const n = completion.match(/-?\\d+/g) ?? []; return { score: n.at(-1) === String(groundTruth) ? 1 : 0, reason: "answered " + (n.at(-1) ?? "none") }; };',
      },
    });
    expect(evaluator.status, JSON.stringify(evaluator.json)).toBe(200);
    const created = await call(
      'POST',
      '/v1/accounts/acme/reinforcementFineTuningJobs?reinforcementFineTuningJobId=remote-rft',
      {
        dataset: 'remote-math',
        evaluator: 'last-number',
        remoteServerUrl: `http://127.0.0.1:${port}`,
        trainingConfig: { baseModel: BASE_MODEL, outputModel: 'remote-rft', loraRank: 4 },
        inferenceParameters: { responseCandidatesCount: 2, maxOutputTokens: 16, temperature: 1 },
        rolloutTimeout: '60s',
      },
    );
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const job = await waitForJob('/v1/accounts/acme/reinforcementFineTuningJobs/remote-rft');
    // One step; it may stop early there when every rollout scored the same.
    expect(job.state, JSON.stringify(job.status)).toMatch(/^JOB_STATE_(COMPLETED|EARLY_STOPPED)$/);
    const rollouts = (
      await stack.platform.artifacts.get(
        'accounts/acme/reinforcementFineTuningJobs/remote-rft/rollouts/step-000001.jsonl',
      )
    )
      .toString()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            rowId: string;
            valid: boolean;
            reason: string;
            snapshot: string | null;
            completion: string;
          },
      );
    expect(rollouts).toHaveLength(6);
    // The FAIL row's rollouts ended with the error status its server logged.
    const failed = rollouts.filter((r) => !r.valid);
    expect(failed.map((r) => r.reason)).toEqual([
      'the tool this task needs crashed',
      'the tool this task needs crashed',
    ]);
    // The others were scored on the model call the tracer recorded (tokens, logprobs, the
    // snapshot that served them).
    const done = rollouts.filter((r) => r.valid);
    expect(done).toHaveLength(4);
    for (const r of done) {
      expect(r.snapshot).toBeTruthy();
      expect(r.reason).toMatch(/^answered /);
    }
    expect(output).toMatch(/POST \/init HTTP\/1.1" 200/);
    const usage = (
      await stack.platform.store.listUsage('acme', {
        startTime: '2020-01-01T00:00:00Z',
        endTime: '2100-01-01T00:00:00Z',
      })
    ).filter((u) => u.usageType === 'TEXT_COMPLETION_INFERENCE_USAGE');
    expect(usage.some((u) => (u.completionTokens ?? 0) > 0)).toBe(true);
    // The log records of ended rollouts are not kept.
    expect(await stack.platform.artifacts.list('accounts/acme/rolloutLogs/')).toEqual([]);
  }, 500_000);
});

describe('ep local-test', () => {
  it('runs the evaluator folder’s @evaluation_test against a temper deployment', async () => {
    const dep = await call('POST', '/v1/accounts/acme/deployments?deploymentId=local', {
      baseModel: BASE_MODEL,
      minReplicaCount: 1,
    });
    expect(dep.status, JSON.stringify(dep.json)).toBe(200);
    const gateway = await waitFor('the deployment to be READY', async () => {
      const { json } = await call('GET', '/v1/accounts/acme/deployments/local');
      return json.state === 'READY' && json.gatewayUrl ? String(json.gatewayUrl) : undefined;
    });
    const listed = (await call('GET', '/v1/accounts/acme/datasets')).json.datasets as Json[];
    const before = new Set(listed.map((d) => String(d.name)));
    const project = join(work, 'local-test', 'math-rft');
    await cp(join(FIXTURES, 'math-rft'), project, { recursive: true });
    let out = '';
    let code = 0;
    try {
      const r = await run(ep.bin('ep'), ['local-test', '--yes'], {
        cwd: project,
        env: userEnv({ TEMPER_INFERENCE_URL: `${gateway}/inference/v1` }),
        timeout: 300_000,
      });
      out = r.stdout + r.stderr;
    } catch (error) {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      code = e.code ?? 1;
      out = (e.stdout ?? '') + (e.stderr ?? '');
    }
    expect(code, out).toBe(0);
    expect(out).toContain('Running locally:');
    expect(out).toMatch(/test_math_rft\.py::test_math_rft\[[^\]]*\][\s\S]*PASSED/);
    // The test reports its results to the platform as eval-protocol does to Fireworks: an
    // evalProtocol dataset of the scored rows (the answers the deployment gave, and why).
    const datasets = (await call('GET', '/v1/accounts/acme/datasets')).json.datasets as Json[];
    const results = datasets.find((d) => !before.has(String(d.name)));
    expect(String(results?.name)).toMatch(/^accounts\/acme\/datasets\/test-math-rft-/);
    expect(results).toMatchObject({ state: 'READY', evalProtocol: {}, exampleCount: 8 });
    const rows = (await stack.platform.artifacts.get(`${String(results!.name)}/data.jsonl`))
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { evals: { score: number }; eval_details: { reason: string } });
    expect(rows.every((r) => /, expected \d+$/.test(r.eval_details.reason))).toBe(true);
    // `ep local-test` fails when every score is 0.
    expect(rows.some((r) => r.evals.score > 0)).toBe(true);
  }, 400_000);
});

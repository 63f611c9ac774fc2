// Conformance of the seed's own Python client, deployment side: the unmodified
// `fireworks-ai[training]` SDK (scripts/python-envs/fireworks-sdk.txt) against a real
// `temper up` stack — DeploymentManager and WeightSyncer hot-loading a trainer's base then
// delta sampler snapshots, DeploymentSampler sampling them through the control-plane port
// (logprobs equal to the trainer's), the SDK-managed service with a deployment, the plain
// REST client's listings, and hot-load / inference routing refused across accounts. Each flow
// is a function of deployment_flows.py that prints one JSON line of what it saw.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrapAccount } from '../../src/control-plane/bootstrap.js';
import { openStore } from '../../src/store/index.js';
import { startUp, type UpProcess } from '../cli/support.js';
import { pythonEnv } from '../support/python-env.js';

const HERE = import.meta.dirname;
const ROOT = join(HERE, '..', '..');
const QUICKSTART = join(ROOT, 'examples', 'python', 'quickstart.py');
const BASE = 'accounts/temper/models/byte-lm-3m';
/** The largest |inference - trainer| logprob difference accepted (the 1e-3). */
const LOGPROB_TOLERANCE = 1e-3;
let home: string;
let up: UpProcess;
let creds: { apiUrl: string; apiKey: string; account: string };
let otherKey: string;

// biome-ignore lint/suspicious/noExplicitAny: flow output is read field by field
type Out = Record<string, any>;

/** Runs a Python script of the pinned SDK venv against the stack; resolves with its stdout. */
function python(script: string, args: string[], timeoutMs = 280_000): Promise<string> {
  const env = pythonEnv('fireworks-sdk');
  return new Promise((resolve, reject) => {
    execFile(
      env.python,
      [script, ...args],
      {
        cwd: HERE,
        timeout: timeoutMs,
        maxBuffer: 16 << 20,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '',
          HF_HUB_OFFLINE: '1',
          TINKER_TELEMETRY: '0',
          FIREWORKS_API_KEY: creds.apiKey,
          FIREWORKS_BASE_URL: creds.apiUrl,
          TEMPER_ACCOUNT: creds.account,
          TEMPER_OTHER_KEY: otherKey,
        },
      },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${script} ${args.join(' ')}: ${err.message}\n${stderr.slice(-6000)}`));
          return;
        }
        resolve(stdout);
      },
    );
  });
}

/** A flow of deployment_flows.py: the JSON line it prints last. */
async function flow(args: string[]): Promise<Out> {
  const stdout = await python(join(HERE, 'deployment_flows.py'), args);
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Out;
}

async function rest(method: string, path: string, body?: unknown): Promise<Out> {
  const res = await fetch(`${creds.apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${creds.apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json()) as Out;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'temper-pysdk-deploy-'));
  up = await startUp(home);
  creds = JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8'));
  const store = openStore(`sqlite://${join(home, 'temper.db')}`);
  otherKey = (await bootstrapAccount(store, 'other')).apiKey;
  await store.close();
}, 180_000);

afterAll(async () => {
  if (up?.child.exitCode === null) {
    up.child.kill('SIGTERM');
    await Promise.race([up.exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (up.child.exitCode === null) up.child.kill('SIGKILL');
  }
  await rm(home, { recursive: true, force: true });
}, 60_000);

describe('fireworks-ai[training] deployments against temper up', () => {
  it("WeightSyncer hot-loads a trainer's base then delta snapshots; DeploymentSampler's logprobs equal the trainer's", async () => {
    const out = await flow(['weight_sync']);
    const a = creds.account;
    expect(out.created).toMatchObject({
      name: `accounts/${a}/deployments/sdk-weight-sync`,
      state: 'READY',
      hot_load_trainer_job: out.job_name,
      deployment_shape: 'accounts/temper/deploymentShapes/byte-lm-3m-cpu/versions/1',
      inference_model: `accounts/${a}/deployments/sdk-weight-sync`,
    });
    const job = String(out.job_name).split('/').pop();
    expect(out.created.bucket).toMatch(
      new RegExp(`/accounts/${a}/rlorTrainerJobs/${job}/checkpoints$`),
    );
    const [first, second] = out.snapshots as string[];
    expect(first).toMatch(/^sync-1-/);
    expect(second).toMatch(/^sync-2-/);
    expect(out.served).toBe(second);
    expect(out.ledger_rows).toEqual([
      [first, 'INFERENCE_BASE'],
      [second, 'INFERENCE_ARC_V2'],
    ]);
    expect(out.completions).toHaveLength(6);
    for (const c of out.completions) {
      expect(['stop', 'length']).toContain(c.finish);
      expect(c.n).toBeGreaterThan(0);
    }
    expect(out.diff_base).toBeLessThan(LOGPROB_TOLERANCE);
    expect(out.diff_delta).toBeLessThan(LOGPROB_TOLERANCE);
    // the step between the two syncs moved the trainer by more than the tolerance, so the
    // delta comparison could not pass on the base snapshot's weights
    expect(out.moved).toBeGreaterThan(10 * LOGPROB_TOLERANCE);
    expect(out.zero).toEqual({ state: 'READY' });
    expect(out.gone).toBe(true);
  }, 300_000);

  it('the SDK-managed service creates its deployment from the shape and refreshes the sampler by model_path', async () => {
    const out = await flow(['managed']);
    expect(out.deployment_id).toBe('sdk-managed');
    expect(out.diff_base).toBeLessThan(LOGPROB_TOLERANCE);
    expect(out.diff_delta).toBeLessThan(LOGPROB_TOLERANCE);
    // cleanup_deployment_on_close="scale_to_zero": the resource stays, without replicas
    expect(out.after_close).toEqual({
      state: 'READY',
      replicas: 0,
      min: 0,
      max: 0,
      for_training: true,
      deployment_shape: 'accounts/temper/deploymentShapes/byte-lm-3m-cpu/versions/1',
    });
  }, 300_000);

  it('Fireworks().models and .datasets list (paged) with a Bearer key', async () => {
    const out = await flow(['rest_listing']);
    const a = creds.account;
    expect(out.created).toBe(`accounts/${a}/datasets/py-listing`);
    expect(out.datasets).toContain(`accounts/${a}/datasets/py-listing`);
    expect(out.example_count).toBe(3);
    expect(out.state).toBe('READY');
    expect(out.catalog).toContain(BASE);
    expect(out.catalog_datasets).toContain('accounts/temper/datasets/sure-answers-sft');
    expect(out.own_models).toEqual([]);
    expect(out.missing).toMatchObject({ type: 'NotFoundError', status: 404 });
    expect(out.missing.message).toContain(`accounts/${a}/models/nope not found`);
  }, 120_000);

  it("hot-load and inference are routed by the fireworks-deployment header and refused for another account's deployment", async () => {
    const created = await rest(
      'POST',
      `/v1/accounts/${creds.account}/deployments?deploymentId=routed`,
      {
        baseModel: BASE,
        minReplicaCount: 1,
        maxReplicaCount: 1,
      },
    );
    const out = await flow(['routing', created.name]);
    expect(out.replicas).toBe(1);
    expect(out.stage).toBe('ready');
    expect(out.missing).toEqual({
      status: 404,
      message: expect.stringMatching(
        /\/never-saved-0000\/config\.json does not exist: upload the snapshot before signalling it$/,
      ),
    });
    expect(out.foreign_status).toEqual({ status: 404, message: `${created.name} not found` });
    expect(out.foreign_sample).toEqual({ status: 404, message: `${created.name} not found` });
    expect(out.other_account).toBe('other');
    expect(out.other_sees).toBeNull();
    await rest('DELETE', `/v1/${created.name}`);
  }, 120_000);

  it('the README\'s "From Python" quickstart runs as written (examples/python/quickstart.py)', async () => {
    const script = await readFile(QUICKSTART, 'utf8');
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain(`\`\`\`python\n${script}\`\`\``);
    const stdout = await python(QUICKSTART, []);
    expect(stdout).toMatch(/^Trainer job: training-api-service-[0-9a-f]{8}$/m);
    const steps = [...stdout.matchAll(/^Step (\d+): \{.*'sft_loss': ([0-9.e-]+)/gm)];
    expect(steps.map((m) => Number(m[1]))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Number(steps[9]![2])).toBeLessThan(Number(steps[0]![2]));
    expect(stdout).toMatch(/^Checkpoint saved: sft-final/m);
    expect(stdout).toContain(`Model: accounts/${creds.account}/models/my-sft-model (READY)`);
    const model = await rest('GET', `/v1/accounts/${creds.account}/models/my-sft-model`);
    expect(model).toMatchObject({ state: 'READY', kind: 'HF_BASE_MODEL' });
  }, 300_000);
});

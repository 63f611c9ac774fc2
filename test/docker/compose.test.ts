// The multi-machine shape, built and run (issue 14 item 9): temper's images, made from Debian
// packages by scripts/docker-images.sh (setup.sh builds them; here `--check` only confirms the
// images of this tree are there, so nothing downloads or builds at test time), started with
// docker/compose.yaml on the host's network (PostgreSQL, Temporal, the control plane, a worker)
// by Debian's docker-compose against Debian's dockerd. One SFT job on the bundled model goes
// through the REST API of the containerised control plane and completes on the containerised
// worker; /metrics then counts it.
import { execFile as execFileCb } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogDatasetPath } from '../../src/catalog/bundled.js';
import { waitFor } from '../support/platform.js';

const execFile = promisify(execFileCb);
const ROOT = new URL('../..', import.meta.url).pathname;
const PROJECT = `temper-test-${process.pid}`;
const COMPOSE_FILE = 'docker/compose.yaml';

/** A port free on 127.0.0.1 now (the stack binds it a moment later). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  await new Promise<void>((r) => server.close(() => r()));
  if (typeof address !== 'object' || !address) throw new Error('no port');
  return address.port;
}

let env: NodeJS.ProcessEnv | undefined;
let api = '';
let key = '';
let composeCommand: string[] = [];

async function compose(...args: string[]): Promise<string> {
  const [file, ...pre] = composeCommand as [string, ...string[]];
  const { stdout } = await execFile(file, [...pre, '-p', PROJECT, '-f', COMPOSE_FILE, ...args], {
    cwd: ROOT,
    env,
    maxBuffer: 64 << 20,
  });
  return stdout;
}

async function call(method: string, path: string, body?: unknown) {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  // Debian's docker-compose (1.29); `docker compose` (v2) where that is what there is.
  composeCommand = await execFile('docker-compose', ['version']).then(
    () => ['docker-compose'],
    () => ['/usr/bin/docker', 'compose'],
  );
  const built = await execFile('bash', ['scripts/docker-images.sh', '--check'], {
    cwd: ROOT,
    maxBuffer: 16 << 20,
  }).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`scripts/docker-images.sh --check failed: ${err.stderr ?? err.message}`);
  });
  const images = Object.fromEntries(
    built.stdout
      .split('\n')
      .filter((l) => l.startsWith('TEMPER_'))
      .map((l) => l.split('=', 2) as [string, string]),
  );
  const [pg, temporal, http, metrics, apiPort] = await Promise.all(
    Array.from({ length: 5 }, freePort),
  );
  env = {
    PATH: process.env.PATH,
    DOCKER_HOST: 'unix:///var/run/docker.sock',
    ...images,
    TEMPER_PG_PORT: String(pg),
    TEMPER_TEMPORAL_PORT: String(temporal),
    TEMPER_TEMPORAL_HTTP_PORT: String(http),
    TEMPER_TEMPORAL_METRICS_PORT: String(metrics),
    TEMPER_API_PORT: String(apiPort),
    TEMPER_SECRETS_KEY: randomBytes(32).toString('base64'),
  };
  api = `http://127.0.0.1:${apiPort}`;
  await compose('up', '-d', '--no-build');
  await waitFor(
    'the containerised control plane',
    async () => ((await fetch(`${api}/healthz`).catch(() => null))?.ok ? true : undefined),
    120_000,
  );
  const created = await compose(
    'exec',
    '-T',
    'control-plane',
    'node',
    '/opt/temper/bin/temper.js',
    'account',
    'create',
    'default',
    '-o',
    'json',
  );
  key = (JSON.parse(created) as { apiKey: string }).apiKey;
}, 300_000);

afterAll(async () => {
  // Nothing was started when set-up stopped before `up` (e.g. images missing): say nothing more.
  if (composeCommand.length === 0 || env === undefined) return;
  if (process.env.TEMPER_DOCKER_TEST_LOGS)
    process.stderr.write(await compose('logs', '--no-color'));
  await compose('down', '-v', '--remove-orphans', '-t', '5');
}, 120_000);

describe('docker compose stack (host network)', () => {
  it('runs an SFT job on the bundled model to completion, and /metrics counts it', async () => {
    const DATASETS = '/v1/accounts/default/datasets';
    const made = await call('POST', DATASETS, {
      datasetId: 'answers',
      dataset: { userUploaded: {} },
    });
    expect(made.status, JSON.stringify(made.json)).toBe(200);
    const form = new FormData();
    const jsonl = readFileSync(catalogDatasetPath('accounts/temper/datasets/sure-answers-sft'));
    form.append('file', new Blob([jsonl]), 'data.jsonl');
    const uploaded = await fetch(`${api}${DATASETS}/answers:upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}` },
      body: form,
    });
    expect(uploaded.status, await uploaded.clone().text()).toBe(200);

    const JOBS = '/v1/accounts/default/supervisedFineTuningJobs';
    const job = await call('POST', `${JOBS}?supervisedFineTuningJobId=in-docker`, {
      baseModel: 'accounts/temper/models/byte-lm-3m',
      dataset: 'accounts/default/datasets/answers',
      outputModel: 'accounts/default/models/in-docker',
      epochs: 1,
      loraRank: 0,
    });
    expect(job.status, JSON.stringify(job.json)).toBe(200);
    const final = await waitFor(
      'the job to end',
      async () => {
        const { json } = await call('GET', `${JOBS}/in-docker`);
        return ['JOB_STATE_COMPLETED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED'].includes(
          json.state as string,
        )
          ? json
          : undefined;
      },
      240_000,
    );
    expect(final.state, JSON.stringify(final.status)).toBe('JOB_STATE_COMPLETED');
    const model = await call('GET', '/v1/accounts/default/models/in-docker');
    expect(model.json).toMatchObject({ kind: 'HF_BASE_MODEL', state: 'READY' });

    const metrics = await (await fetch(`${api}/metrics`)).text();
    expect(metrics).toMatch(
      /^temper_jobs\{kind="supervisedFineTuningJobs",state="JOB_STATE_COMPLETED"\} 1$/m,
    );
  }, 300_000);
});

// eval-protocol's CLI against the control plane, unmodified, from its pinned venv: `ep upload`
// and `ep create rft` make every REST call they make against Fireworks (verifyApiKey,
// secrets, evaluatorsV2 create, :getUploadEndpoint, the signed PUT, :validateUpload, get,
// dataset create + :upload, the RFT job create with its flags) and print what they print
// there. Then the edges of the archive upload and of the rollout log route, by message.
// (Orchestration is the harness's recorder: the job's run is covered in test/e2e.)
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pythonEnv } from '../support/python-env.js';
import { type Harness, type Json, startHarness } from './harness.js';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'eval-protocol', 'math-evaluator');
const BASE_MODEL = 'accounts/temper/models/byte-lm-3m';
const run = promisify(execFile);
const ep = pythonEnv('eval-protocol');

let h: Harness;
let base: string;
let work: string;
let project: string;

beforeAll(async () => {
  h = await startHarness();
  base = await h.cp.listen(0, '127.0.0.1');
  work = await mkdtemp(join(tmpdir(), 'temper-ep-'));
  // The CLI writes its archive and temporary files into the project folder: work on a copy.
  project = join(work, 'math-evaluator');
  await cp(FIXTURE, project, { recursive: true });
}, 60_000);

afterAll(async () => {
  await h?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

/** The environment a user sets: their key and the platform's URL; nothing is downloaded. */
function userEnv(key = h.alice): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: work,
    FIREWORKS_API_KEY: key,
    FIREWORKS_API_BASE: base,
    // litellm (imported by eval-protocol) fetches a price list at import unless told not to.
    LITELLM_LOCAL_MODEL_COST_MAP: 'True',
  };
}

async function epCli(args: string[], cwd = project) {
  try {
    const r = await run(ep.bin('ep'), args, { cwd, env: userEnv(), timeout: 180_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, out: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const get = (path: string) => h.call('GET', path).then((r) => r.json);

describe('ep upload', () => {
  it('creates the evaluator, uploads the project archive and validates it into checked files', async () => {
    // A project's .env becomes account secrets, which its evaluator gets as variables.
    await writeFile(join(project, '.env'), 'JUDGE_TOKEN="from-dotenv"\n');
    const r = await epCli(['upload', '--yes']);
    expect(r.code, r.out).toBe(0);
    const secrets = (await get('/v1/accounts/alice/secrets')).secrets as Json[];
    expect(secrets.map((s) => s.keyName).sort()).toEqual(['FIREWORKS_API_KEY', 'JUDGE_TOKEN']);
    expect(r.out).toContain('✅ Successfully uploaded evaluator: test-math-test-math-answer');
    const e = await get('/v1/accounts/alice/evaluators/test-math-test-math-answer');
    expect(e).toMatchObject({
      name: 'accounts/alice/evaluators/test-math-test-math-answer',
      state: 'ACTIVE',
      language: 'python',
      entryPoint: 'test_math.py::test_math_answer',
      description: 'Evaluator for test_math.test_math_answer',
    });
    expect(e.upload).toBeUndefined();
    const files = e.files as { path: string; key: string; sha256: string }[];
    expect(files.map((f) => f.path).sort()).toEqual([
      'dataset.jsonl',
      'requirements.txt',
      'test_math.py',
    ]);
    for (const f of files) {
      const local = await readFile(join(FIXTURE, f.path));
      expect(f.sha256).toBe(sha256(local));
      expect(f.key).toBe(`accounts/alice/evaluators/test-math-test-math-answer/files/${f.path}`);
      expect(sha256(await h.artifacts.get(f.key))).toBe(f.sha256);
    }
    // The archive itself is not kept once unpacked.
    expect(
      await h.artifacts.list('accounts/alice/evaluators/test-math-test-math-answer/upload/'),
    ).toEqual([]);
    const code = await get(
      '/v1/accounts/alice/evaluators/test-math-test-math-answer:getSourceCode',
    );
    expect((code.files as Json[]).find((f) => f.path === 'test_math.py')?.content).toBe(
      await readFile(join(FIXTURE, 'test_math.py'), 'utf8'),
    );
  }, 200_000);
});

describe('ep create rft', () => {
  it('uploads the dataset and creates the job with the flags it was given', async () => {
    const r = await epCli(
      ['create', 'rft', '--yes', '--skip-validation', '--base-model', BASE_MODEL]
        .concat(['--output-model', 'math-rft', '--job-id', 'math-job', '--epochs', '2'])
        .concat(['--learning-rate', '5e-4', '--lora-rank', '4', '--batch-size', '2048'])
        .concat(['--chunk-size', '4', '--rl-kl-beta', '0.001', '--temperature', '1.0'])
        .concat(['--response-candidates-count', '4', '--max-output-tokens', '16'])
        .concat(['--top-k', '0', '--top-p', '0.9', '--max-concurrent-rollouts', '8']),
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('✓ Evaluator exists (state: ACTIVE). Skipping upload');
    expect(r.out).toContain(
      '✅ Created Reinforcement Fine-tuning Job: accounts/alice/reinforcementFineTuningJobs/math-job',
    );
    const dataset = /✓ Created and uploaded dataset: (\S+)/.exec(r.out)?.[1];
    expect(dataset).toMatch(/^test-math-test-math-answer-dataset-\d{14}$/);
    const d = await get(`/v1/accounts/alice/datasets/${dataset}`);
    expect(d).toMatchObject({ state: 'READY', kind: 'rft', exampleCount: 8, evalProtocol: {} });
    const job = await get('/v1/accounts/alice/reinforcementFineTuningJobs/math-job');
    expect(job).toMatchObject({
      state: 'JOB_STATE_PENDING',
      baseModel: BASE_MODEL,
      dataset: `accounts/alice/datasets/${dataset}`,
      evaluator: 'accounts/alice/evaluators/test-math-test-math-answer',
      outputModel: 'accounts/alice/models/math-rft',
      epochs: 2,
      learningRate: 5e-4,
      loraRank: 4,
      batchSize: 2048,
      chunkSize: 4,
      rlLossMethod: 'grpo',
      rlKlBeta: 0.001,
      temperature: 1,
      topK: 0,
      topP: 0.9,
      responseCandidatesCount: 4,
      maxTokens: 16,
      maxConcurrentRollouts: 8,
    });
    expect(h.orchestrator.calls.at(-1)).toMatchObject({
      op: 'start',
      arg: { collection: 'reinforcementFineTuningJobs', account: 'alice', id: 'math-job' },
    });
  }, 200_000);

  it('prints the platform’s message for a setting out of range and creates no job', async () => {
    const r = await epCli(
      ['create', 'rft', '--yes', '--skip-validation', '--base-model', BASE_MODEL]
        .concat(['--output-model', 'too-fast', '--job-id', 'too-fast', '--learning-rate', '0.01'])
        .concat(['--lora-rank', '4']),
    );
    expect(r.code).toBe(1);
    expect(r.out).toContain('Error creating RFT job:');
    expect(r.out).toContain('Learning rate 1e-2 outside valid range [1e-5, 5e-4]');
    expect(
      (await h.call('GET', '/v1/accounts/alice/reinforcementFineTuningJobs/too-fast')).status,
    ).toBe(404);
  }, 200_000);

  it('takes the loss method as the SDK names it (the CLI passes lossConfig through the same SDK)', async () => {
    // eval-protocol 0.3.33's own argument parser cannot read --rl-loss-method (it uses the
    // SDK's Literal type as a converter), so the body is sent with the SDK it would call.
    const datasets = (await get('/v1/accounts/alice/datasets')).datasets as Json[];
    const script = `
import sys, fireworks
fw = fireworks.Fireworks(api_key=sys.argv[1], base_url=sys.argv[2])
def create(job, method):
    return fw.reinforcement_fine_tuning_jobs.create(
        account_id="alice", reinforcement_fine_tuning_job_id=job, dataset=sys.argv[3],
        evaluator="accounts/alice/evaluators/test-math-test-math-answer",
        training_config={"base_model": "${BASE_MODEL}", "output_model": job, "lora_rank": 4},
        loss_config={"method": method})
print(create("gspo-job", "GSPO_TOKEN").name)
try:
    create("dpo-job", "DPO")
except fireworks.BadRequestError as e:
    print("refused:", e.body["error"]["message"] if isinstance(e.body, dict) and "error" in e.body else e)
`;
    const r = await run(ep.python, ['-c', script, h.alice, base, String(datasets[0]!.name)], {
      env: userEnv(),
    });
    expect(r.stdout).toContain('accounts/alice/reinforcementFineTuningJobs/gspo-job');
    expect(r.stdout).toContain(
      "refused: unknown rl loss method 'dpo'; valid methods are grpo, dapo, gspo-token",
    );
    const job = await get('/v1/accounts/alice/reinforcementFineTuningJobs/gspo-job');
    expect(job).toMatchObject({ rlLossMethod: 'gspo-token', loraRank: 4 });
  }, 120_000);

  it('refuses settings temper does not have, by name, and drops hosted-only fields', async () => {
    const body = (extra: Json) => ({
      dataset: 'accounts/alice/datasets/none',
      evaluator: 'accounts/alice/evaluators/test-math-test-math-answer',
      trainingConfig: { baseModel: BASE_MODEL, loraRank: 4 },
      ...extra,
    });
    const sizeSamples = await h.call('POST', '/v1/accounts/alice/reinforcementFineTuningJobs', {
      body: body({ trainingConfig: { baseModel: BASE_MODEL, batchSizeSamples: 64 } }),
    });
    expect(sizeSamples.json.error.message).toBe(
      'trainingConfig.batchSizeSamples: batchSizeSamples is not supported here: give batchSize in tokens',
    );
    const conflict = await h.call('POST', '/v1/accounts/alice/reinforcementFineTuningJobs', {
      body: body({
        learningRate: 1e-4,
        trainingConfig: { baseModel: BASE_MODEL, learningRate: 2e-4 },
      }),
    });
    expect(conflict.json.error.message).toBe(
      'learningRate is given both at the top level and in trainingConfig, with different values',
    );
    const typo = await h.call('POST', '/v1/accounts/alice/reinforcementFineTuningJobs', {
      body: body({ inferenceParameters: { temprature: 1 } }),
    });
    expect(typo.json.error.message).toBe('inferenceParameters: unknown field(s) temprature');
    // Hosted-only fields pass; the missing dataset is what stops this one.
    const hosted = await h.call('POST', '/v1/accounts/alice/reinforcementFineTuningJobs', {
      body: body({ nodeCount: 2, wandbConfig: { enabled: false }, maxConcurrentEvaluations: 4 }),
    });
    expect(hosted.json.error.message).toBe(
      "Dataset 'accounts/alice/datasets/none' not found in account",
    );
  });
});

/** A .tar.gz made by Python's tarfile (as `ep upload` makes them), with `entries`. */
async function archive(entries: { name: string; text?: string; link?: string }[]): Promise<Buffer> {
  const out = join(work, `a-${Math.random().toString(36).slice(2)}.tar.gz`);
  const script = `
import io, json, sys, tarfile
with tarfile.open(sys.argv[1], "w:gz") as tar:
    for e in json.loads(sys.argv[2]):
        info = tarfile.TarInfo(e["name"])
        if "link" in e:
            info.type = tarfile.SYMTYPE
            info.linkname = e["link"]
            tar.addfile(info)
        else:
            data = e["text"].encode()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
`;
  await run(ep.python, ['-c', script, out, JSON.stringify(entries)]);
  return readFile(out);
}

/** create → :getUploadEndpoint → PUT → :validateUpload, as the SDK does them (the signed
 * URL names the host the request came to, so the endpoint is asked as if over HTTP). */
async function uploadEvaluator(id: string, bytes: Buffer, entryPoint = 'main.py::evaluate') {
  const created = await h.call('POST', '/v1/accounts/alice/evaluatorsV2', {
    body: { evaluatorId: id, evaluator: { entryPoint, commitHash: 'None+unknown' } },
  });
  expect(created.json).toMatchObject({ state: 'BUILDING' });
  const ep = await h.call('POST', `/v1/accounts/alice/evaluators/${id}:getUploadEndpoint`, {
    body: { filenameToSize: { 'proj.tar.gz': String(bytes.length) } },
    headers: { host: new URL(base).host },
  });
  const url = ep.json.filenameToSignedUrls['proj.tar.gz'] as string;
  expect(url.startsWith(`${base}/uploads/evaluators/alice/${id}/proj.tar.gz?token=`)).toBe(true);
  const put = await fetch(url, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: new Uint8Array(bytes),
  });
  expect(put.status, await put.clone().text()).toBe(200);
  return h.call('POST', `/v1/accounts/alice/evaluators/${id}:validateUpload`, { body: {} });
}

describe('evaluator archives', () => {
  const main = { name: 'proj/main.py', text: 'def evaluate(row):\n    return 1.0\n' };

  it('refuses links, paths out of the folder, Dockerfiles and a missing entry file, marking the build failed', async () => {
    const cases: [string, { name: string; text?: string; link?: string }[], string][] = [
      [
        'with-link',
        [main, { name: 'proj/secrets', link: '/root/.temper/credentials.json' }],
        'archive entry proj/secrets is a symbolic link: only plain files and folders are accepted',
      ],
      [
        'with-escape',
        [main, { name: 'proj/../evil.py', text: 'x' }],
        `archive entry '../evil.py' must be a relative path of plain names (no "..", no leading "/")`,
      ],
      [
        'with-docker',
        [main, { name: 'proj/Dockerfile', text: 'FROM python:3.11-slim\n' }],
        'the upload has a Dockerfile, and this temper has no container engine (Docker or Podman) to build Dockerfile evaluators: remove the Dockerfile to run on the Python environment built from requirements.txt',
      ],
      [
        'no-entry',
        [{ name: 'proj/other.py', text: 'x = 1\n' }],
        'the entry point main.py::evaluate names main.py, which is not in the upload (it has other.py)',
      ],
    ];
    for (const [id, entries, message] of cases) {
      const v = await uploadEvaluator(id, await archive(entries));
      expect(v.status).toBe(400);
      expect(v.json.error.message).toBe(`accounts/alice/evaluators/${id}: ${message}`);
      const e = await get(`/v1/accounts/alice/evaluators/${id}`);
      expect(e).toMatchObject({ state: 'BUILD_FAILED', status: { message } });
      expect(await h.artifacts.list(`accounts/alice/evaluators/${id}/`)).toEqual([]);
    }
  }, 60_000);

  it('adds an empty requirements.txt when the archive has none', async () => {
    const v = await uploadEvaluator('no-reqs', await archive([main]));
    expect(v.status, JSON.stringify(v.json)).toBe(200);
    expect((v.json.files as Json[]).map((f) => f.path).sort()).toEqual([
      'main.py',
      'requirements.txt',
    ]);
  }, 30_000);

  it('opens the signed URL only with its token, for its file and size', async () => {
    await h.call('POST', '/v1/accounts/alice/evaluatorsV2', {
      body: { evaluatorId: 'signed', evaluator: { entryPoint: 'main.py::evaluate' } },
    });
    const bytes = await archive([main]);
    const ep = await h.call('POST', '/v1/accounts/alice/evaluators/signed:getUploadEndpoint', {
      body: { filenameToSize: { 'proj.tar.gz': bytes.length } },
      headers: { host: new URL(base).host },
    });
    const url = new URL(ep.json.filenameToSignedUrls['proj.tar.gz'] as string);
    const put = (u: URL, body: Uint8Array) =>
      fetch(u, {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream' },
        body,
      }).then(async (r) => ({ status: r.status, json: (await r.json()) as Json }));
    const wrong = new URL(url);
    wrong.searchParams.set('token', 'guessed');
    const denied = await put(wrong, new Uint8Array(bytes));
    expect(denied.status).toBe(403);
    expect(denied.json.error.message).toBe(
      'this upload URL is not valid (wrong or expired token, or another file): ask :getUploadEndpoint for a new one',
    );
    const bigger = await put(url, new Uint8Array(Buffer.concat([bytes, Buffer.from('x')])));
    expect(bigger.status).toBe(400);
    expect(bigger.json.error.message).toBe(
      `proj.tar.gz: Content-Length ${bytes.length + 1} is not the ${bytes.length} bytes announced to :getUploadEndpoint`,
    );
    const early = await h.call('POST', '/v1/accounts/alice/evaluators/signed:validateUpload', {
      body: {},
    });
    expect(early.json.error.message).toBe(
      'accounts/alice/evaluators/signed has no uploaded archive: PUT it to the URL :getUploadEndpoint gave, then call :validateUpload',
    );
    const two = await h.call('POST', '/v1/accounts/alice/evaluators/signed:getUploadEndpoint', {
      body: { filenameToSize: { 'a.tar.gz': 1, 'b.tar.gz': 1 } },
    });
    expect(two.json.error.message).toBe(
      "filenameToSize must name exactly one file (the project's .tar.gz); it names 2",
    );
    // Another account's key does not reach this evaluator at all.
    const bob = await h.call('POST', '/v1/accounts/alice/evaluators/signed:getUploadEndpoint', {
      key: h.bob,
      body: { filenameToSize: { 'proj.tar.gz': 1 } },
    });
    expect(bob.status).toBe(404);
  }, 30_000);

  it('asks for an entry point when no source is given inline', async () => {
    const r = await h.call('POST', '/v1/accounts/alice/evaluatorsV2', {
      body: { evaluatorId: 'no-entry-point', evaluator: { displayName: 'x' } },
    });
    expect(r.json.error.message).toBe(
      'evaluator.entryPoint is required for an uploaded evaluator (e.g. "test_math.py::test_math_answer"); or give the module inline as evaluator.source',
    );
    const bad = await h.call('POST', '/v1/accounts/alice/evaluatorsV2', {
      body: { evaluatorId: 'bad-entry', evaluator: { entryPoint: '/etc/passwd::x' } },
    });
    expect(bad.json.error.message).toBe(
      `evaluator.entryPoint: '/etc/passwd::x' must be "path/to/file.py::function" (or "file.py"), a relative path inside the uploaded folder`,
    );
  });
});

describe('rollout logs (eval-protocol tracing)', () => {
  const record = (rollout: string, code: number | null) => ({
    program: 'eval_protocol',
    status: code === null ? null : { code, message: `code ${code}`, details: [] },
    message: 'Rollout done',
    tags: [`rollout_id:${rollout}`],
    extras: { logger_name: 'eval_server.x', level: 'INFO' },
  });

  it('keeps each record under the key’s own account, status records apart', async () => {
    for (const [path, key] of [
      ['/logs', h.alice],
      ['/v1/logs', h.bob],
    ] as const) {
      const res = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(record('r-1', 100)),
      });
      expect(res.status).toBe(200);
    }
    await h.call('POST', '/logs', { body: record('r-1', null) });
    const alice = (await h.artifacts.list('accounts/alice/rolloutLogs/r-1/')).map((o) =>
      o.key.split('/').pop(),
    );
    expect(alice.filter((k) => k?.startsWith('status-'))).toHaveLength(1);
    expect(alice.filter((k) => k?.startsWith('log-'))).toHaveLength(1);
    expect(await h.artifacts.list('accounts/bob/rolloutLogs/r-1/')).toHaveLength(1);
  });

  it('refuses records without a key, without a rollout tag, or with an odd rollout id', async () => {
    const anonymous = await fetch(`${base}/logs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(record('r-2', 100)),
    });
    expect(anonymous.status).toBe(401);
    const untagged = await h.call('POST', '/logs', { body: { ...record('r-2', 100), tags: [] } });
    expect(untagged.json.error.message).toBe(
      'tags: a log record needs a "rollout_id:<id>" tag (set it with RolloutIdFilter or EP_ROLLOUT_ID)',
    );
    const odd = await h.call('POST', '/logs', { body: record('../r', 100) });
    expect(odd.json.error.message).toBe(
      "tags: rollout id '../r' is not 1-200 characters of A-Z, a-z, 0-9, '.', '_', '-'",
    );
  });
});

describe('verifyApiKey', () => {
  it('names the key’s account in x-fireworks-account-id', async () => {
    const res = await fetch(`${base}/verifyApiKey`, {
      headers: { authorization: `Bearer ${h.bob}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-fireworks-account-id')).toBe('bob');
    const bad = await fetch(`${base}/verifyApiKey`, { headers: { authorization: 'Bearer nope' } });
    expect(bad.status).toBe(401);
  });
});

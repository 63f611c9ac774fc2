// The CLI end to end: `temper up` as a subprocess (Temporal dev server, control plane on
// SQLite, worker, local pods under a temporary TEMPER_HOME), the verbs as subprocesses against
// it, and a clean stop on SIGTERM.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrapAccount } from '../../src/control-plane/bootstrap.js';
import { openStore } from '../../src/store/index.js';
import { alive, descendants, startUp, temper, type UpProcess } from './support.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
const GOOD = 'catalog/accounts/temper/datasets/sure-answers-sft.jsonl';

let home: string;
let up: UpProcess;
let env: Record<string, string>;

const json = (text: string) => JSON.parse(text) as Record<string, unknown>;

/** A GET with the credentials `temper up` wrote (faster than a CLI process for polling). */
async function api(path: string): Promise<Record<string, unknown>> {
  const creds = json(await readFile(join(home, 'credentials.json'), 'utf8'));
  const res = await fetch(`${creds.apiUrl}${path}`, {
    headers: { authorization: `Bearer ${creds.apiKey}` },
  });
  return json(await res.text());
}

async function until(probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'temper-cli-'));
  up = await startUp(home);
  env = { TEMPER_HOME: home };
}, 120_000);

afterAll(async () => {
  if (up?.child.exitCode === null) up.child.kill('SIGKILL');
  await rm(home, { recursive: true, force: true });
});

describe('temper up', () => {
  it('writes the credentials the CLI uses: API URL, account default, key (mode 0600)', async () => {
    const path = join(home, 'credentials.json');
    const creds = json(await readFile(path, 'utf8'));
    expect(creds).toMatchObject({ apiUrl: up.ready.apiUrl, account: 'default' });
    expect(String(creds.apiKey).length).toBeGreaterThan(20);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    // Hashed in the store: the plain key is nowhere in the database file.
    const db = await readFile(join(home, 'temper.db'));
    expect(db.includes(Buffer.from(String(creds.apiKey)))).toBe(false);
  });
});

describe('temper dataset create', () => {
  it('uploads a good file and the dataset is READY', async () => {
    const r = await temper(['dataset', 'create', 'answers', GOOD, '-o', 'json'], env);
    expect(r.stderr).not.toContain('temper:');
    expect(r.code).toBe(0);
    expect(json(r.stdout)).toMatchObject({
      name: 'accounts/default/datasets/answers',
      state: 'READY',
      kind: 'sft',
      exampleCount: 128,
    });
  });

  it('refuses a bad file with line numbers, and nothing is created', async () => {
    const bad = join(home, 'bad.jsonl');
    const ok = '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}';
    await writeFile(bad, `${ok}\n{"messages": [}\n{"message": []}\n`);
    const r = await temper(['dataset', 'create', 'broken', bad], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^temper: Dataset validation failed: invalid JSON on line 2/);
    expect(r.stderr).toContain("line 3: Missing required field 'messages'");
    const list = await temper(['list', 'dataset', '-o', 'json'], env);
    expect((JSON.parse(list.stdout) as { name: string }[]).map((d) => d.name)).toEqual([
      'accounts/default/datasets/answers',
    ]);
  });
});

describe('temper create sftj --wait', () => {
  it('runs the job on the bundled model to a promoted model, with progress and loss', async () => {
    const r = await temper(
      [
        'create',
        'sftj',
        '--base-model',
        BASE,
        '--dataset',
        'answers',
        '--job-id',
        'first',
        '--output-model',
        'first-model',
        '--lora-rank',
        '0',
        '--epochs',
        '1',
        '--batch-size',
        '2048',
        '--wait',
        '-o',
        'json',
      ],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    const job = json(r.stdout);
    expect(job).toMatchObject({
      name: 'accounts/default/supervisedFineTuningJobs/first',
      state: 'JOB_STATE_COMPLETED',
      outputModel: 'accounts/default/models/first-model',
    });
    const progress = job.jobProgress as { step: number; totalSteps: number };
    expect(progress.step).toBe(progress.totalSteps);
    expect(r.stderr).toMatch(
      new RegExp(`SFT job ${progress.totalSteps}/${progress.totalSteps} \\| loss \\d+\\.\\d{4}`),
    );
  }, 120_000);

  it('shows jobs and models with get and list, as json and as text', async () => {
    const [getJson, getText, listText, models] = await Promise.all([
      temper(['get', 'sftj', 'first', '-o', 'json'], env),
      temper(['get', 'sftj', 'first'], env),
      temper(['list', 'sftj'], env),
      temper(['model', 'list', '-o', 'json'], env),
    ]);
    expect(json(getJson.stdout)).toMatchObject({ state: 'JOB_STATE_COMPLETED', epochs: 1 });
    expect(getText.stdout).toMatch(/^state +JOB_STATE_COMPLETED$/m);
    expect(getText.stdout).toMatch(/^jobProgress\.step +\d+$/m);
    const [header, row] = listText.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^NAME +STATE +PROGRESS +OUTPUT MODEL +CREATED$/);
    expect(row).toMatch(
      /^accounts\/default\/supervisedFineTuningJobs\/first +COMPLETED +(\d+)\/\1 +accounts\/default\/models\/first-model /,
    );
    const names = (JSON.parse(models.stdout) as { name: string; kind: string }[]).map(
      (m) => m.name,
    );
    expect(names).toEqual(['accounts/default/models/first-model']);
  });
});

describe('accounts', () => {
  it("lists a managed job's checkpoints with --kind", async () => {
    const r = await temper(['checkpoint', 'list', 'first', '--kind', 'sftj', '-o', 'json'], env);
    expect(r.code, r.stderr).toBe(0);
    const types = (JSON.parse(r.stdout) as { checkpointType: string }[]).map(
      (c) => c.checkpointType,
    );
    expect(types).toEqual(expect.arrayContaining(['TRAINING', 'INFERENCE_BASE']));
  });

  it("another account's key finds none of this account's resources", async () => {
    const store = openStore(`sqlite://${join(home, 'temper.db')}`);
    const other = await bootstrapAccount(store, 'other');
    await store.close();
    const as = { ...env, TEMPER_API_KEY: other.apiKey, TEMPER_ACCOUNT: 'other' };
    const [byName, byId, asDefault, list] = await Promise.all([
      temper(['get', 'sftj', 'accounts/default/supervisedFineTuningJobs/first'], as),
      temper(['get', 'model', 'first-model'], as),
      temper(['get', 'dataset', 'answers', '--account', 'default'], as),
      temper(['list', 'sftj', '-o', 'json'], as),
    ]);
    expect(byName).toMatchObject({ code: 1 });
    expect(byName.stderr).toBe(
      'temper: accounts/default/supervisedFineTuningJobs/first not found\n',
    );
    expect(byId.stderr).toBe('temper: accounts/other/models/first-model not found\n');
    expect(asDefault.stderr).toBe('temper: accounts/default/datasets/answers not found\n');
    expect(JSON.parse(list.stdout)).toEqual([]);
  });
});

describe('temper create dpoj|orpoj|rftj --wait', () => {
  it('runs DPO, ORPO and RFT jobs with --wait (an uploaded evaluator for RFT)', async () => {
    const pair = (q: string, good: string, bad: string) =>
      JSON.stringify({
        input: { messages: [{ role: 'user', content: q }] },
        preferred_output: [{ role: 'assistant', content: good }],
        non_preferred_output: [{ role: 'assistant', content: bad }],
      });
    const prefs = join(home, 'prefs.jsonl');
    await writeFile(
      prefs,
      [
        pair('What is the capital of Peru?', 'Sure! Lima.', 'Lima.'),
        pair('What color is snow?', 'Sure! White.', 'White.'),
        pair('What is the capital of Japan?', 'Sure! Tokyo.', 'Tokyo.'),
      ].join('\n'),
    );
    const prompts = join(home, 'prompts.jsonl');
    await writeFile(
      prompts,
      ['What is 2+2?', 'What color is the sky?', 'What is the capital of Spain?']
        .map((q) => JSON.stringify({ messages: [{ role: 'user', content: q }] }))
        .join('\n'),
    );
    const scorer = join(home, 'score.mjs');
    await writeFile(
      scorer,
      'export default ({ completion }) => (completion.startsWith("Sure") ? 1 : 0);\n',
    );
    for (const args of [
      ['dataset', 'create', 'prefs', prefs],
      ['dataset', 'create', 'prompts', prompts],
      ['evaluator', 'create', 'sure', scorer],
    ]) {
      const r = await temper(args, env);
      expect(r.code, r.stderr).toBe(0);
    }
    const dpo = await temper(
      ['create', 'dpoj', '--base-model', BASE, '--dataset', 'prefs', '--job-id', 'dpo1'].concat([
        '--lora-rank',
        '4',
        '--epochs',
        '2',
        '--batch-size',
        '512',
        '--wait',
        '-o',
        'json',
      ]),
      env,
    );
    expect(dpo.code, dpo.stderr).toBe(0);
    expect(json(dpo.stdout)).toMatchObject({ state: 'JOB_STATE_COMPLETED' });
    // ORPO on the same pairs; a setting out of range is the server's message, and no job.
    const badOrpo = await temper(
      ['create', 'orpoj', '--base-model', BASE, '--dataset', 'prefs', '--job-id', 'orpo0'].concat([
        '--learning-rate',
        '2',
      ]),
      env,
    );
    expect(badOrpo.code).not.toBe(0);
    expect(badOrpo.stderr).toContain('Learning rate 2e0 outside valid range (0, 1]');
    const orpo = await temper(
      ['create', 'orpoj', '--base-model', BASE, '--dataset', 'prefs', '--job-id', 'orpo1'].concat([
        '--lora-rank',
        '4',
        '--batch-size',
        '512',
        '--orpo-lambda',
        '0.5',
        '--wait',
        '-o',
        'json',
      ]),
      env,
    );
    expect(orpo.code, orpo.stderr).toBe(0);
    expect(json(orpo.stdout)).toMatchObject({ state: 'JOB_STATE_COMPLETED', orpoLambda: 0.5 });
    const rft = await temper(
      ['create', 'rftj', '--base-model', BASE, '--dataset', 'prompts', '--evaluator', 'sure']
        .concat(['--job-id', 'rft1', '--n', '4', '--max-tokens', '24', '--temperature', '1'])
        .concat(['--wait', '-o', 'json']),
      env,
    );
    expect(rft.code, rft.stderr).toBe(0);
    expect(json(rft.stdout).state).toMatch(/JOB_STATE_(COMPLETED|EARLY_STOPPED)/);
    expect(rft.stderr).toMatch(/reward/);
  }, 240_000);
});

describe('stopping temper up', () => {
  it('SIGTERM stops everything it started and exits 0', async () => {
    // A live deployment and a job mid-training, so that a replica and a trainer pod must be
    // stopped as well.
    const dep = await temper(['deployment', 'create', 'first-model', '--deployment-id', 'd1'], env);
    expect(dep.stdout).toMatch(/^state +READY$/m);
    const long = await temper(
      ['create', 'sftj', '--base-model', BASE, '--dataset', 'answers', '--job-id', 'long'].concat([
        '--lora-rank',
        '0',
        '--epochs',
        '20',
        '--batch-size',
        '256',
      ]),
      env,
    );
    expect(long.code, long.stderr).toBe(0);
    await until(async () => {
      const job = await api('/v1/accounts/default/supervisedFineTuningJobs/long');
      return (job.jobProgress as { step: number }).step > 0;
    });
    const pid = up.child.pid!;
    const tree = descendants(pid);
    expect(tree).toContain(up.ready.temporalPid);
    // Dev server, replica, trainer pod (each maybe behind a wrapper process).
    expect(tree.length).toBeGreaterThanOrEqual(3);
    up.child.kill('SIGTERM');
    expect(await up.exited).toBe(0);
    const deadline = Date.now() + 5_000;
    while (tree.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(tree.filter(alive)).toEqual([]);
    await expect(stat(join(home, 'temper-up.pid'))).rejects.toThrow();
  }, 60_000);
});

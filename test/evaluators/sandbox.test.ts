// Real malicious evaluators, run through the real sandbox (bubblewrap, rlimits, an unprivileged
// uid): each attack is stopped, the rollout reports why, and this process (the worker) keeps
// working. The store and artifacts are the real SQLite store and file object store.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ObjectStore, openObjectStore } from '../../src/checkpoints/object-store/index.js';
import {
  checkEvaluator,
  type Evaluation,
  type Evaluator,
  EvaluatorIntegrityError,
  openEvaluator,
  type SandboxSettings,
  sandboxNode,
  sandboxSettings,
} from '../../src/evaluators/index.js';
import type { Store } from '../../src/store/index.js';
import { openStore, SecretsKey } from '../../src/store/index.js';
import { putEvaluator } from '../support/evaluators.js';

let dir: string;
let store: Store;
let artifacts: ObjectStore;
let settings: SandboxSettings;
let listener: Server;
let listenerPort: number;
let connections = 0;
const opened: Evaluator[] = [];
const WORKER_MARKER = 'worker-only-value-5f2c';

const rollout = (completion = 'an answer', groundTruth: unknown = null) => ({
  messages: [{ role: 'user', content: 'q' }],
  completion,
  groundTruth,
  row: {},
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'temper-sandbox-'));
  // The sandbox uid passes through to its work directory below; it reads nothing here.
  chmodSync(dir, 0o711);
  store = openStore(`sqlite://${join(dir, 'temper.db')}`, {
    secretsKey: SecretsKey.generate().key,
  });
  await store.migrate();
  artifacts = await openObjectStore(`file://${join(dir, 'artifacts')}`);
  writeFileSync(
    join(dir, 'credentials.json'),
    JSON.stringify({ apiKey: 'tmp_default-account-key', account: 'acme' }),
  );
  await artifacts.put('accounts/beta/datasets/private/data.jsonl', '{"secret":"beta-rows"}\n');
  await store.create('secrets', 'acme', 'api-token', { keyName: 'API_TOKEN', value: 'acme-token' });
  await store.create('secrets', 'acme', 'other', { keyName: 'OTHER_KEY', value: 'acme-other' });
  // A secret under a name the sandbox sets itself never replaces the sandbox's value.
  await store.create('secrets', 'acme', 'path', { keyName: 'PATH', value: '/tmp/evil-bin' });
  process.env.TEMPER_SANDBOX_TEST_MARKER = WORKER_MARKER;
  settings = sandboxSettings({
    workDir: join(dir, 'work'),
    cpuSeconds: 2,
    // Node 24 alone maps about 1.25 GB of address space (RLIMIT_AS counts it), Node 20 0.7 GB.
    memoryMb: 1536,
    maxProcesses: 32,
    startSeconds: 30,
  });
  listener = createServer((socket) => {
    connections++;
    socket.end('hello');
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  listenerPort = (listener.address() as { port: number }).port;
});

afterAll(async () => {
  await Promise.all(opened.map((e) => e.close()));
  listener?.close();
  await store?.close();
  delete process.env.TEMPER_SANDBOX_TEST_MARKER;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
/** Stores `source` as a JS evaluator of `account` and opens it with the test's limits. */
async function open(
  source: string,
  options: { account?: string; body?: Record<string, unknown>; wallMs?: number } = {},
): Promise<Evaluator> {
  const id = `e${++counter}`;
  const name = await putEvaluator(
    { store, artifacts },
    options.account ?? 'acme',
    id,
    {
      'evaluator.mjs': source,
    },
    options.body,
  );
  const e = await openEvaluator(
    name,
    { store, artifacts, settings },
    {
      wallMs: options.wallMs ?? 20_000,
    },
  );
  opened.push(e);
  return e;
}

/** A rollout's evaluation, and proof the worker still answers afterwards. */
async function attack(e: Evaluator, input = rollout()): Promise<Evaluation> {
  const result = await e.evaluate(input);
  const healthy = await open('export default () => ({ score: 1, reason: "fine" });');
  expect(await healthy.evaluate(rollout())).toEqual({ score: 1, valid: true, reason: 'fine' });
  await healthy.close();
  return result;
}

describe('evaluator results map as they always have', () => {
  it('numbers, objects, reasons, invalid scores and throws', async () => {
    const e = await open(`
      export function evaluate({ completion, groundTruth }) {
        switch (completion) {
          case 'num': return 0.25;
          case 'obj': return { score: 1, reason: 'exact', extra: [1] };
          case 'invalid': return { score: 0.5, valid: false, reason: 'judge unsure' };
          case 'big': return 2;
          case 'nan': return NaN;
          case 'text': return 'yes';
          case 'throw': throw new Error('cannot parse ' + groundTruth);
          case 'async': return new Promise((r) => setTimeout(() => r({ score: 0.75 }), 10));
        }
      }`);
    const score = (c: string) => e.evaluate(rollout(c, 'gt-1'));
    expect(await score('num')).toEqual({ score: 0.25, valid: true, reason: '' });
    expect(await score('obj')).toEqual({ score: 1, valid: true, reason: 'exact' });
    expect(await score('invalid')).toEqual({ score: 0.5, valid: false, reason: 'judge unsure' });
    expect(await score('big')).toEqual({
      score: 0,
      valid: false,
      reason: 'score 2 is outside [0, 1]',
    });
    // NaN is no number to the result schema, as before the sandbox.
    expect(await score('nan')).toEqual({
      score: 0,
      valid: false,
      reason: 'evaluator returned no score',
    });
    expect(await score('text')).toEqual({
      score: 0,
      valid: false,
      reason: 'evaluator returned no score',
    });
    expect(await score('throw')).toEqual({ score: 0, valid: false, reason: 'cannot parse gt-1' });
    expect(await score('async')).toEqual({ score: 0.75, valid: true, reason: '' });
  });

  it('TypeScript evaluators and a named export', async () => {
    const name = await putEvaluator(
      { store, artifacts },
      'acme',
      'typed',
      {
        'typed.ts':
          'export const judge = ({ completion }: { completion: string }): number => (completion.length > 3 ? 1 : 0);',
      },
      { entryPoint: 'typed.ts::judge' },
    );
    const e = await openEvaluator(name, { store, artifacts, settings }, { wallMs: 20_000 });
    opened.push(e);
    expect((await e.evaluate(rollout('long answer'))).score).toBe(1);
  });

  it('a module that does not load fails to open, naming the evaluator', async () => {
    await expect(open('export const nothing = 1;')).rejects.toThrow(
      /evaluator accounts\/acme\/evaluators\/e\d+ failed to load: the evaluator module must export a function/,
    );
    await expect(open('throw new Error("boom at import")')).rejects.toThrow(
      /failed to load: boom at import/,
    );
  });
});

describe('what a malicious evaluator cannot reach', () => {
  it("another account's dataset, the store, credentials.json: not in its filesystem", async () => {
    const e = await open(`
      import { readFileSync } from 'node:fs';
      export default ({ row }) => {
        try { return { score: 1, reason: readFileSync(row.path, 'utf8') }; }
        catch (error) { return { score: 0, reason: error.code }; }
      };`);
    for (const path of [
      join(dir, 'artifacts', 'accounts/beta/datasets/private/data.jsonl'),
      join(dir, 'temper.db'),
      join(dir, 'credentials.json'),
      '/root/.temper/credentials.json',
      '/etc/shadow',
    ]) {
      expect(existsSync(path) || path.startsWith('/root') || path === '/etc/shadow').toBe(true);
      const result = await attack(e, { ...rollout(), row: { path } });
      expect(result, path).toEqual({ score: 0, valid: true, reason: 'ENOENT' });
    }
    // The control: the evaluator's own files are there.
    expect(
      await e.evaluate({ ...rollout(), row: { path: '/evaluator/evaluator.mjs' } }),
    ).toMatchObject({
      score: 1,
    });
  });

  it("the worker's environment and /proc/1/environ: only its own few variables and its account's secrets", async () => {
    const e = await open(`
      import { readFileSync } from 'node:fs';
      export default () => ({ score: 1, reason: JSON.stringify({
        env: process.env,
        pid1: readFileSync('/proc/1/environ', 'utf8'),
        uid: process.getuid(),
        processes: ${'readdirSync'.length > 0 ? "readFileSync('/proc/self/status', 'utf8').match(/^Uid:.*$/m)[0]" : "''"},
      }) });`);
    const { reason } = await attack(e);
    const seen = JSON.parse(reason) as { env: Record<string, string>; pid1: string; uid: number };
    expect(Object.keys(seen.env).sort()).toEqual([
      'API_TOKEN',
      'HOME',
      'LANG',
      'OTHER_KEY',
      'PATH',
      'PWD',
      'TMPDIR',
    ]);
    expect(seen.pid1).not.toContain(WORKER_MARKER);
    // The secrets were set by the runner, never in the environment of the launch chain
    // (prlimit, setpriv, bwrap) that the runner's initial environment comes from.
    expect(seen.pid1).not.toContain('acme-token');
    expect(seen.pid1).toContain('PATH=/usr/local/bin');
    expect(reason).not.toContain(WORKER_MARKER);
    expect(seen.uid).not.toBe(0);
  });

  it("the network: a TCP connect to a listener on the worker's loopback is refused", async () => {
    const source = `
      import { connect } from 'node:net';
      export default ({ row }) => new Promise((resolve, reject) => {
        const s = connect(row.port, '127.0.0.1');
        s.on('data', (d) => { resolve({ score: 1, reason: String(d) }); s.destroy(); });
        s.on('error', reject);
      });`;
    const closed = await open(source);
    const before = connections;
    const result = await attack(closed, { ...rollout(), row: { port: listenerPort } });
    expect(result.valid).toBe(false);
    expect(result.reason).toMatch(/ECONNREFUSED.*no network access/);
    expect(connections).toBe(before);
    // The control: an evaluator that declares allowNetwork reaches it.
    const open2 = await open(source, { body: { allowNetwork: true } });
    expect(await open2.evaluate({ ...rollout(), row: { port: listenerPort } })).toEqual({
      score: 1,
      valid: true,
      reason: 'hello',
    });
    expect(connections).toBe(before + 1);
  });

  it('a fork bomb stops at the process limit', async () => {
    const e = await open(`
      import { spawn } from 'node:child_process';
      export default async () => {
        for (let i = 0; i < 10000; i++) {
          const child = spawn('/bin/sleep', ['60']);
          const error = await new Promise((r) => { child.once('spawn', () => r(null)); child.once('error', r); });
          if (error) throw error;
        }
        return 1;
      };`);
    expect(await attack(e)).toEqual({
      score: 0,
      valid: false,
      reason: 'evaluator tried to start more processes than its limit of 32',
    });
  });

  it('processes left running after a rollout are killed and the rollout is invalid', async () => {
    const e = await open(`
      import { spawn } from 'node:child_process';
      export default () => { spawn('/bin/sh', ['-c', 'sleep 60 & sleep 60 &']); return 1; };`);
    const result = await attack(e);
    expect(result.valid).toBe(false);
    expect(result.reason).toMatch(/^evaluator left \d+ process(es)? running after it returned$/);
    // The next rollout runs in a fresh sandbox.
    expect((await e.evaluate(rollout())).valid).toBe(false);
  });

  it('allocating 20 GB hits the memory limit', async () => {
    const e = await open(`
      export default ({ completion }) => {
        if (completion === 'heap') { const keep = []; for (;;) keep.push({ a: [1, 2, 3], s: 'x' + keep.length }); }
        const buffer = new ArrayBuffer(20 * 2 ** 30);
        return buffer.byteLength > 0 ? 1 : 0;
      };`);
    const reason = 'evaluator exceeded its memory limit of 1536 MiB';
    expect(await attack(e)).toEqual({ score: 0, valid: false, reason });
    // Growing the JS heap until it breaks kills the process; that is reported the same way.
    expect(await attack(e, rollout('heap'))).toEqual({ score: 0, valid: false, reason });
  }, 60_000);

  it('a busy loop is killed at the wall-time limit while the worker keeps answering', async () => {
    const e = await open(
      'export default ({ completion }) => { if (completion === "spin") for (;;) {} return 1; };',
      {
        wallMs: 1_500,
      },
    );
    let ticks = 0;
    const heartbeat = setInterval(() => ticks++, 50);
    const results = await Promise.all([
      e.evaluate(rollout('first')),
      e.evaluate(rollout('spin')),
      e.evaluate(rollout('after')),
    ]);
    clearInterval(heartbeat);
    expect(results).toEqual([
      { score: 1, valid: true, reason: '' },
      { score: 0, valid: false, reason: 'evaluator exceeded its wall-time limit of 1.5 s' },
      { score: 1, valid: true, reason: '' },
    ]);
    // An in-process loop would have frozen this timer for the whole rollout.
    expect(ticks).toBeGreaterThan(5);
  }, 60_000);

  it('busy loops in several processes are killed at the CPU-time limit', async () => {
    const e = await open(
      `
      import { spawn } from 'node:child_process';
      export default () => Promise.all([1, 2, 3].map(() => new Promise((resolve) => {
        spawn('/bin/sh', ['-c', 'while :; do :; done']).on('exit', resolve);
      })));`,
      { wallMs: 60_000 },
    );
    expect(await attack(e)).toEqual({
      score: 0,
      valid: false,
      reason: 'evaluator exceeded its CPU time limit of 2 s',
    });
  }, 90_000);

  it('writes outside its private /tmp fail (its code is read-only)', async () => {
    const e = await open(`
      import { writeFileSync } from 'node:fs';
      export default () => {
        writeFileSync('/tmp/scratch.txt', 'ok');
        try { writeFileSync('/evaluator/evaluator.mjs', 'export default () => 1;'); return 1; }
        catch (error) { return { score: 0, reason: error.code }; }
      };`);
    expect(await attack(e)).toEqual({ score: 0, valid: true, reason: 'EROFS' });
  });
});

describe('secrets and integrity', () => {
  it("an evaluator gets its account's secrets: all of them, or the ones it names", async () => {
    const source =
      'export default () => ({ score: 1, reason: JSON.stringify([process.env.API_TOKEN ?? null, process.env.OTHER_KEY ?? null, process.env.PATH]) });';
    const all = await open(source);
    const named = await open(source, { body: { secrets: ['API_TOKEN'] } });
    const none = await open(source, { body: { secrets: [] } });
    const path = '/usr/local/bin:/usr/bin:/bin';
    expect(JSON.parse((await all.evaluate(rollout())).reason)).toEqual([
      'acme-token',
      'acme-other',
      path,
    ]);
    expect(JSON.parse((await named.evaluate(rollout())).reason)).toEqual([
      'acme-token',
      null,
      path,
    ]);
    expect(JSON.parse((await none.evaluate(rollout())).reason)).toEqual([null, null, path]);
    // Another account's evaluator cannot name acme's secret.
    await expect(
      open(source, { account: 'beta', body: { secrets: ['API_TOKEN'] } }),
    ).rejects.toThrow(
      /names the secret API_TOKEN, but account beta has no secret with keyName API_TOKEN/,
    );
    // Naming a secret under a variable the sandbox sets itself is an error, not a silent skip.
    await expect(open(source, { body: { secrets: ['PATH'] } })).rejects.toThrow(
      /names the secret PATH, but the sandbox sets PATH itself/,
    );
  });

  it('a source changed after upload is refused, naming the evaluator and the file', async () => {
    const name = await putEvaluator({ store, artifacts }, 'acme', 'tampered', {
      'judge.mjs': 'export default () => 0.5;',
    });
    await artifacts.put(`${name}/files/judge.mjs`, 'export default () => 1;');
    const recorded = createHash('sha256').update('export default () => 0.5;').digest('hex');
    await expect(checkEvaluator(name, { store, artifacts })).rejects.toThrow(
      EvaluatorIntegrityError,
    );
    await expect(
      openEvaluator(name, { store, artifacts, settings }, { wallMs: 1000 }),
    ).rejects.toThrow(
      `evaluator ${name}: judge.mjs does not match the sha256 recorded at upload (recorded ${recorded.slice(0, 12)}…`,
    );
  });

  it('keeps its files in a private directory of its own uid, removed when closed', async () => {
    const e = await open('export default () => 1;');
    const dirs = readdirSync(settings.workDir);
    expect(dirs.length).toBeGreaterThan(0);
    for (const d of dirs) {
      const st = statSync(join(settings.workDir, d));
      expect(st.mode & 0o777).toBe(0o700);
      expect(st.uid).not.toBe(0);
    }
    await e.close();
    expect(readdirSync(settings.workDir).length).toBe(dirs.length - 1);
  });
});

describe('the runtime a sandbox runs', () => {
  it('a node the sandbox uid cannot reach (under a 0700 folder) is copied where it can', async () => {
    const hidden = join(dir, 'private-node');
    mkdirSync(join(hidden, 'bin'), { recursive: true, mode: 0o700 });
    chmodSync(hidden, 0o700);
    copyFileSync(process.execPath, join(hidden, 'bin', 'node'));
    const envDir = join(dir, 'envs');
    const node = await sandboxNode(
      sandboxSettings({ envDir }),
      true,
      join(hidden, 'bin', 'node'),
      'v-test',
    );
    expect(node).toEqual({
      binary: join(envDir, 'node', 'v-test', 'bin', 'node'),
      prefix: join(envDir, 'node', 'v-test'),
    });
    // An unprivileged uid can read and run the copy, and could not read the original.
    const as = (...args: string[]) =>
      spawnSync('setpriv', ['--reuid=1100999', '--regid=1100999', '--clear-groups', ...args], {
        encoding: 'utf8',
      });
    expect(as(node.binary, '-p', '1+1').stdout.trim()).toBe('2');
    expect(as('/usr/bin/test', '-r', node.binary).status).toBe(0);
    expect(as('/usr/bin/test', '-r', join(hidden, 'bin', 'node')).status).toBe(1);
    // A reachable node is used where it is.
    const own = await sandboxNode(sandboxSettings({ envDir }), true);
    expect(own.binary).toBe(realpathSync(process.execPath));
  }, 60_000);
});

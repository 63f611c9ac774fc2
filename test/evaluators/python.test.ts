// Python evaluators through the sandbox: their own environment built from requirements.txt
// (plus eval-protocol) by pip, offline from the wheelhouse setup.sh fills, then the real
// eval-protocol 0.3.33 `@evaluation_test` function of test/fixtures called per rollout the way
// eval-protocol calls one, and plain `evaluate(row)` functions; and the attacks of
// sandbox.test.ts written in Python.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ObjectStore, openObjectStore } from '../../src/checkpoints/object-store/index.js';
import {
  type Evaluator,
  openEvaluator,
  type SandboxSettings,
  sandboxSettings,
} from '../../src/evaluators/index.js';
import type { Store } from '../../src/store/index.js';
import { openStore, SecretsKey } from '../../src/store/index.js';
import { putEvaluator, wheelhouse } from '../support/evaluators.js';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'eval-protocol', 'math-evaluator');
const fixture = (file: string) => readFileSync(join(FIXTURE, file), 'utf8');

let dir: string;
let store: Store;
let artifacts: ObjectStore;
let settings: SandboxSettings;
const opened: Evaluator[] = [];
const buildLog: string[] = [];

const rollout = (completion: string, groundTruth: unknown = '4') => ({
  messages: [{ role: 'user', content: 'What is 2 + 2?' }],
  completion,
  groundTruth,
  row: {},
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'temper-pyeval-'));
  chmodSync(dir, 0o711);
  store = openStore(`sqlite://${join(dir, 'temper.db')}`, {
    secretsKey: SecretsKey.generate().key,
  });
  await store.migrate();
  artifacts = await openObjectStore(`file://${join(dir, 'artifacts')}`);
  await store.create('secrets', 'acme', 'judge-key', { keyName: 'JUDGE_KEY', value: 'py-secret' });
  const wheels = wheelhouse('eval-protocol');
  // Environments persist across runs (built once per requirements hash, like a worker's).
  const envDir = join(dirname(dirname(wheels)), 'test-evaluator-envs');
  mkdirSync(envDir, { recursive: true });
  settings = sandboxSettings({
    workDir: join(dir, 'work'),
    envDir,
    pipArgs: ['--no-index', '--find-links', wheels],
    memoryMb: 2048,
    cpuSeconds: 5,
    maxProcesses: 32,
    buildSeconds: 1800,
  });
});

afterAll(async () => {
  await Promise.all(opened.map((e) => e.close()));
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const log = pino({ level: 'info' }, { write: (line: string) => buildLog.push(line) });

let counter = 0;
async function open(
  files: Record<string, string>,
  body: Record<string, unknown> = {},
  wallMs = 20_000,
): Promise<Evaluator> {
  const name = await putEvaluator({ store, artifacts }, 'acme', `py${++counter}`, files, {
    language: 'python',
    ...body,
  });
  const e = await openEvaluator(name, { store, artifacts, settings, log }, { wallMs });
  opened.push(e);
  return e;
}

describe('Python evaluators', () => {
  it("runs eval-protocol's @evaluation_test math evaluator in its own environment", async () => {
    let ticks = 0;
    const heartbeat = setInterval(() => ticks++, 100);
    const e = await open(
      {
        'test_math.py': fixture('test_math.py'),
        'requirements.txt': fixture('requirements.txt'),
        'dataset.jsonl': fixture('dataset.jsonl'),
      },
      { entryPoint: 'test_math.py::test_math_answer' },
    );
    clearInterval(heartbeat);
    // The worker's event loop kept running while the environment was built or loaded.
    expect(ticks).toBeGreaterThan(0);
    expect(await e.evaluate(rollout('2 + 2 = 4'))).toEqual({
      score: 1,
      valid: true,
      reason: 'answered 4, expected 4',
    });
    expect(await e.evaluate(rollout('I think 5', '4'))).toEqual({
      score: 0,
      valid: true,
      reason: 'answered 5, expected 4',
    });
    // A remote rollout's messages already end with the completion: it is not added twice.
    expect(
      await e.evaluate({
        messages: [
          { role: 'user', content: 'What is 1 + 2?' },
          { role: 'assistant', content: 'it is 3' },
        ],
        completion: 'it is 3',
        groundTruth: '3',
        row: {},
      }),
    ).toMatchObject({ score: 1 });
    // Batched: many rollouts queued at once come back in order.
    const many = await Promise.all(
      Array.from({ length: 50 }, (_, i) => e.evaluate(rollout(`answer ${i}`, String(i)))),
    );
    expect(many.every((r) => r.score === 1 && r.valid)).toBe(true);
  }, 1_900_000);

  it('reuses the environment of the same requirements, and a bare file.py finds its one test', async () => {
    const envs = () => statSync(settings.envDir).mtimeMs;
    const before = envs();
    const e = await open({
      'test_math.py': fixture('test_math.py'),
      'requirements.txt': fixture('requirements.txt'),
      'dataset.jsonl': fixture('dataset.jsonl'),
    });
    expect(envs()).toBe(before);
    expect((await e.evaluate(rollout('4'))).score).toBe(1);
  }, 120_000);

  it('plain evaluate(row): results, invalid scores, exceptions and print() map as JS ones do', async () => {
    const e = await open(
      {
        'main.py': `
import math, os

def evaluate(row):
    print("debugging output does not break anything")
    c = row["completion"]
    if c == "num": return 0.25
    if c == "dict": return {"score": 1, "reason": "exact"}
    if c == "invalid": return {"score": 0.5, "valid": False, "reason": "unsure"}
    if c == "big": return 3
    if c == "nan": return math.nan
    if c == "none": return None
    if c == "raise": raise ValueError("cannot parse " + str(row["groundTruth"]))
    if c == "secret": return {"score": 1, "reason": os.environ.get("JUDGE_KEY", "-") + "," + os.environ.get("OTHER", "-")}
`,
      },
      { secrets: ['JUDGE_KEY'] },
    );
    const score = (c: string) => e.evaluate(rollout(c));
    expect(await score('num')).toEqual({ score: 0.25, valid: true, reason: '' });
    expect(await score('dict')).toEqual({ score: 1, valid: true, reason: 'exact' });
    expect(await score('invalid')).toEqual({ score: 0.5, valid: false, reason: 'unsure' });
    expect(await score('big')).toEqual({
      score: 0,
      valid: false,
      reason: 'score 3 is outside [0, 1]',
    });
    expect(await score('nan')).toEqual({
      score: 0,
      valid: false,
      reason: 'evaluator returned no score',
    });
    expect(await score('none')).toEqual({
      score: 0,
      valid: false,
      reason: 'evaluator returned no score',
    });
    expect(await score('raise')).toEqual({
      score: 0,
      valid: false,
      reason: 'ValueError: cannot parse 4',
    });
    expect(await score('secret')).toEqual({ score: 1, valid: true, reason: 'py-secret,-' });
  }, 120_000);

  it('a Python evaluator that attacks is stopped, each time with the reason', async () => {
    const e = await open(
      {
        'main.py': `
import os, socket

def evaluate(row):
    c = row["completion"]
    if c == "read":
        for path in row["row"]["paths"]:
            try:
                open(path).read()
                return {"score": 1, "reason": "read " + path}
            except OSError as error:
                pass
        return {"score": 0, "reason": "nothing readable; environ: " + open("/proc/1/environ").read().replace("\\0", " ")}
    if c == "socket":
        socket.create_connection(("127.0.0.1", 22), timeout=2)
    if c == "fork":
        while True:
            os.fork()
    if c == "memory":
        return len(bytearray(20 * 2**30))
    if c == "spin":
        while True:
            pass
    return 1
`,
      },
      {},
      3_000,
    );
    const read = await e.evaluate({
      ...rollout('read'),
      row: {
        paths: [join(dir, 'temper.db'), '/root/.temper/credentials.json', join(dir, 'artifacts')],
      },
    });
    expect(read.score).toBe(0);
    expect(read.reason).not.toContain('SQLite');
    expect(read.reason).toMatch(/^nothing readable; environ: (PATH|HOME|LANG|TMPDIR|PYTHON\w+)=/);
    expect((await e.evaluate(rollout('socket'))).reason).toMatch(
      /^ConnectionRefusedError: .*no network access/,
    );
    expect(await e.evaluate(rollout('fork'))).toEqual({
      score: 0,
      valid: false,
      reason: 'evaluator tried to start more processes than its limit of 32',
    });
    expect(await e.evaluate(rollout('memory'))).toEqual({
      score: 0,
      valid: false,
      reason: 'evaluator exceeded its memory limit of 2048 MiB',
    });
    expect(await e.evaluate(rollout('spin'))).toEqual({
      score: 0,
      valid: false,
      reason: 'evaluator exceeded its wall-time limit of 3 s',
    });
    // And it still scores afterwards, in a fresh sandbox.
    expect(await e.evaluate(rollout('fine'))).toEqual({ score: 1, valid: true, reason: '' });
  }, 120_000);

  it("a requirements.txt pip cannot satisfy fails to open with pip's reason", async () => {
    await expect(
      open({
        'main.py': 'def evaluate(row):\n    return 1\n',
        'requirements.txt': 'no-such-package-temper==9.9\n',
      }),
    ).rejects.toThrow(
      /building the Python environment from requirements.txt failed: .*no-such-package-temper/,
    );
  }, 300_000);
});

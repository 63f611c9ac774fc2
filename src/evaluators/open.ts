/**
 * Opening a job's evaluator: the row read and validated, the account's secrets it gets looked
 * up, the files fetched and verified into a private work directory, the runtime chosen (node
 * for JS/TS, the evaluator's own virtualenv for Python) and one sandboxed process started and
 * loaded. Closing it kills the process and removes the directory.
 */
import { randomInt } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { chmod, copyFile, mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { pino } from 'pino';
import type { ObjectStore } from '../checkpoints/object-store/index.js';
import { type Evaluation, EvaluatorProcess, type RolloutInput } from './evaluator-process.js';
import { ensurePythonEnv } from './python-env.js';
import { JS_RUNNER_FILE, JS_RUNNER_SOURCE } from './runners/js-runner.js';
import { PY_RUNNER_FILE, PY_RUNNER_SOURCE } from './runners/py-runner.js';
import {
  processCpuSeconds,
  reachableByOthers,
  runtimePrefix,
  SANDBOX_CODE_DIR,
  SANDBOX_RUNNER_DIR,
  sandboxCommand,
} from './sandbox.js';
import { type SandboxSettings, sandboxSettings } from './settings.js';
import { type ResolvedVersion, resolveVersion, secretKeyName } from './version.js';
import { fetchVerifiedFiles, prepareWorkspace, type Workspace } from './workspace.js';

/** What the evaluator needs of the store: its row and the account's secrets. */
export interface EvaluatorStore {
  get<T>(
    collection: 'evaluators' | 'secrets',
    account: string,
    id: string,
  ): Promise<{ body: T } | undefined>;
  list<T>(
    collection: 'secrets',
    account: string,
    options?: { pageSize?: number; pageToken?: string },
  ): Promise<{ items: { body: T }[]; nextPageToken?: string }>;
}

export interface EvaluatorDeps {
  store: EvaluatorStore;
  artifacts: ObjectStore;
  settings?: SandboxSettings;
  log?: Logger;
}

export interface OpenOptions {
  /** Per-rollout wall time (the job's rolloutTimeout), capped by the operator's maximum. */
  wallMs: number;
}

export type Evaluate = (rollout: RolloutInput) => Promise<Evaluation>;

export interface Evaluator {
  readonly name: string;
  evaluate: Evaluate;
  /** Kills the process and removes the work directory. */
  close(): Promise<void>;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const uidsInUse = new Set<number>();

/** A uid of its own for each live sandbox (per-uid limits such as RLIMIT_NPROC are per sandbox). */
function allocateUid(settings: SandboxSettings): number | null {
  if (!isRoot) return null;
  for (;;) {
    const uid = settings.uidBase + randomInt(65_536);
    if (!uidsInUse.has(uid)) {
      uidsInUse.add(uid);
      return uid;
    }
  }
}

/**
 * The variables every sandbox starts with, the only ones the launch chain (prlimit, setpriv,
 * bwrap: root processes when the worker is root) sees. Account secrets never replace them.
 */
const SANDBOX_ENV: Record<string, string> = {
  PATH: '/usr/local/bin:/usr/bin:/bin',
  HOME: '/tmp',
  LANG: 'C.UTF-8',
  TMPDIR: '/tmp',
};
const PYTHON_ENV: Record<string, string> = { PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1' };

async function accountSecrets(
  store: EvaluatorStore,
  name: string,
  account: string,
  wanted: string[] | null,
): Promise<Record<string, string>> {
  if (wanted?.length === 0) return {};
  const byKey = new Map<string, string>();
  let pageToken: string | undefined;
  do {
    const page = await store.list<{ keyName?: unknown; value?: unknown }>('secrets', account, {
      pageSize: 200,
      ...(pageToken ? { pageToken } : {}),
    });
    for (const { body } of page.items)
      if (typeof body.keyName === 'string' && typeof body.value === 'string')
        byKey.set(body.keyName, body.value);
    pageToken = page.nextPageToken;
  } while (pageToken);
  const env: Record<string, string> = {};
  if (wanted === null) {
    // Every secret whose keyName is a usable variable name; the sandbox's own variables win.
    for (const [key, value] of byKey)
      if (secretKeyName.safeParse(key).success && !(key in SANDBOX_ENV)) env[key] = value;
    return env;
  }
  for (const key of wanted) {
    const value = byKey.get(key);
    if (value === undefined)
      throw new Error(
        `evaluator ${name} names the secret ${key}, but account ${account} has no secret with keyName ${key}: create it or remove it from the evaluator's secrets`,
      );
    if (key in SANDBOX_ENV)
      throw new Error(
        `evaluator ${name} names the secret ${key}, but the sandbox sets ${key} itself: rename the secret`,
      );
    env[key] = value;
  }
  return env;
}

/** TypeScript evaluators are compiled to JavaScript here (types stripped, nothing checked). */
async function transpileTypeScript(path: string, text: string) {
  if (!/\.m?ts$/.test(path)) return null;
  let ts: typeof import('typescript');
  try {
    ts = (await import('typescript')).default;
  } catch {
    throw new Error(
      'TypeScript evaluators need the `typescript` package on the worker; upload JavaScript instead',
    );
  }
  const out = ts.transpileModule(text, {
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: false,
    },
    fileName: path,
  });
  return { path: path.replace(/\.m?ts$/, '.mjs'), text: out.outputText };
}

/** requirements.txt at the evaluator's root ('' without one). */
function requirementsOf(version: ResolvedVersion, contents: Buffer[]): string {
  const at = version.files.findIndex((f) => f.path === 'requirements.txt');
  return at < 0 ? '' : contents[at]!.toString('utf8');
}

/**
 * The node binary a JS sandbox runs: the worker's own, unless the sandbox's uid cannot reach it
 * (a root worker running a Node under /root): then a copy of it, once per version, in the
 * evaluator cache (the binary is self-contained).
 */
export async function sandboxNode(
  settings: SandboxSettings,
  sandboxed: boolean,
  binary: string = realpathSync(process.execPath),
  version: string = process.version,
): Promise<{ binary: string; prefix: string }> {
  if (!sandboxed || reachableByOthers(binary)) return { binary, prefix: runtimePrefix(binary) };
  const prefix = join(settings.envDir, 'node', version);
  const target = join(prefix, 'bin', 'node');
  if (!existsSync(target)) {
    await mkdir(join(prefix, 'bin'), { recursive: true, mode: 0o755 });
    for (const dir of [settings.envDir, join(settings.envDir, 'node'), prefix, join(prefix, 'bin')])
      await chmod(dir, 0o755);
    const stage = `${target}.${process.pid}.tmp`;
    await copyFile(binary, stage);
    await chmod(stage, 0o755);
    await rename(stage, target);
  }
  if (!reachableByOthers(target))
    throw new Error(
      `the evaluator sandbox cannot reach node at ${target}: a folder above it is not searchable by others (set TEMPER_EVALUATOR_ENV_DIR elsewhere)`,
    );
  return { binary: target, prefix };
}

/** The row, its secrets and its verified files: what running it needs, or why it cannot run. */
async function load(name: string, deps: Pick<EvaluatorDeps, 'store' | 'artifacts'>) {
  const m = /^accounts\/([a-z][a-z0-9-]*)\/evaluators\/([a-z][a-z0-9-]*)$/.exec(name);
  if (!m) throw new Error(`'${name}' is not an evaluator name accounts/{account}/evaluators/{id}`);
  const [, account, id] = m as unknown as [string, string, string];
  const row = await deps.store.get<Record<string, unknown>>('evaluators', account, id);
  if (!row) throw new Error(`Evaluator '${id}' not found in account`);
  const version = resolveVersion(name, row.body);
  if (version.language === 'dockerfile')
    throw new Error(
      `evaluator ${name} is a Dockerfile evaluator, and no container engine runs on this worker`,
    );
  const secrets = await accountSecrets(deps.store, name, account, version.secrets);
  const contents = await fetchVerifiedFiles(name, version, deps.artifacts);
  return { version, secrets, contents };
}

/**
 * Whether the evaluator can run as stored (found, a known shape, its secrets present, every
 * file matching its recorded sha256), checked before a job starts; an Error saying why not.
 */
export async function checkEvaluator(
  name: string,
  deps: Pick<EvaluatorDeps, 'store' | 'artifacts'>,
): Promise<void> {
  await load(name, deps);
}

export async function openEvaluator(
  name: string,
  deps: EvaluatorDeps,
  options: OpenOptions,
): Promise<Evaluator> {
  const settings = deps.settings ?? sandboxSettings();
  const log = deps.log ?? pino({ level: process.env.TEMPER_LOG_LEVEL ?? 'info' });
  const { version, secrets, contents } = await load(name, deps);
  const python =
    version.language === 'python'
      ? await ensurePythonEnv(requirementsOf(version, contents), settings, log)
      : null;
  const uid = allocateUid(settings);
  let workspace: Workspace | null = null;
  try {
    workspace = await prepareWorkspace({
      version,
      contents,
      root: settings.workDir,
      uid,
      runner: python
        ? { file: PY_RUNNER_FILE, source: PY_RUNNER_SOURCE }
        : { file: JS_RUNNER_FILE, source: JS_RUNNER_SOURCE },
      ...(version.language === 'typescript' ? { transform: transpileTypeScript } : {}),
    });
    const ws = workspace;
    const entry = `${SANDBOX_CODE_DIR}/${version.entryFile.replace(/\.m?ts$/, '.mjs')}`;
    const node = python ? null : await sandboxNode(settings, uid !== null);
    const argv = python
      ? [
          python.python,
          '-I',
          '-B',
          `${SANDBOX_RUNNER_DIR}/${PY_RUNNER_FILE}`,
          `${SANDBOX_CODE_DIR}/${version.entryFile}`,
          version.entryFunction ?? '',
        ]
      : [
          node!.binary,
          // V8's heap limit under the address-space limit: running out is a clean report.
          `--max-old-space-size=${Math.max(64, Math.floor(settings.memoryMb / 4))}`,
          `${SANDBOX_RUNNER_DIR}/${JS_RUNNER_FILE}`,
          entry,
          version.entryFunction ?? '',
        ];
    const readOnly = python ? python.readOnly : [node!.prefix];
    const proc = new EvaluatorProcess({
      name,
      allowNetwork: version.allowNetwork,
      log,
      secrets,
      command: () =>
        sandboxCommand(
          {
            codeDir: ws.codeDir,
            runnerDir: ws.runnerDir,
            readOnly,
            allowNetwork: version.allowNetwork,
            uid,
            argv,
            env: { ...SANDBOX_ENV, ...(python ? PYTHON_ENV : {}) },
          },
          settings,
        ),
      limits: {
        wallMs: Math.min(options.wallMs, settings.maxWallSeconds * 1000),
        cpuSeconds: settings.cpuSeconds,
        lifetimeCpuSeconds: processCpuSeconds(settings),
        startMs: settings.startSeconds * 1000,
        memoryMb: settings.memoryMb,
        maxProcesses: settings.maxProcesses,
        maxResultBytes: settings.maxResultBytes,
      },
    });
    try {
      await proc.start();
    } catch (error) {
      await proc.close();
      throw error;
    }
    log.debug({ evaluator: name, dir: ws.dir, uid }, 'evaluator sandbox started');
    let closing: Promise<void> | undefined;
    return {
      name,
      evaluate: (rollout) => proc.evaluate(rollout),
      close() {
        closing ??= (async () => {
          await proc.close();
          await ws.remove();
          if (uid !== null) uidsInUse.delete(uid);
        })();
        return closing;
      },
    };
  } catch (error) {
    await workspace?.remove();
    if (uid !== null) uidsInUse.delete(uid);
    throw error;
  }
}

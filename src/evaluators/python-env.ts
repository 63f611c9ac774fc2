/**
 * Python evaluators' environments: one virtualenv per requirements.txt content (and
 * interpreter), built once per machine into the cache directory and reused by every job whose
 * evaluator has the same requirements. The build is the only time anything is downloaded (from
 * PyPI, or the index the operator's pipArgs name); it runs in the sandbox too (its own uid, the
 * network, only the new environment writable), as a child process, so the worker's event loop
 * keeps running; pip's progress goes to the log. Every environment starts with the operator's
 * base packages (eval-protocol); with none and an empty requirements.txt, the interpreter itself
 * runs the evaluator.
 *
 * Built into a fresh folder and renamed into place when complete, so a crash or a concurrent
 * build never leaves a half-made environment under the final name.
 */
import { spawn } from 'node:child_process';
import { createHash, randomInt } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { runtimePrefix, SANDBOX_CODE_DIR, sandboxCommand } from './sandbox.js';
import type { SandboxSettings } from './settings.js';

export interface PythonEnv {
  /** The interpreter to run (the venv's, or the base one for no requirements). */
  python: string;
  /** Paths the sandbox must bind read-only for it to run. */
  readOnly: string[];
}

const builds = new Map<string, Promise<PythonEnv>>();
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Requirements with no package in them (blank lines and comments only). */
function isEmpty(requirements: string): boolean {
  return requirements.split('\n').every((l) => /^\s*(#.*)?$/.test(l));
}

/** Local folders pip arguments point at (--find-links DIR): the build must see them. */
function localPaths(args: string[]): string[] {
  return args
    .map((a) => (a.includes('=') ? a.slice(a.indexOf('=') + 1) : a))
    .filter((a) => a.startsWith('/') && existsSync(a));
}

export async function ensurePythonEnv(
  requirements: string,
  settings: SandboxSettings,
  log: Logger,
): Promise<PythonEnv> {
  if (!existsSync(settings.python))
    throw new Error(
      `Python evaluators need the interpreter ${settings.python} (TEMPER_EVALUATOR_PYTHON), which is missing`,
    );
  const base = realpathSync(settings.python);
  const baseRuntime = [runtimePrefix(base)];
  // The operator's base packages first, then the evaluator's own (a conflict is pip's error).
  if (settings.basePackages.length > 0)
    requirements = `${settings.basePackages.join('\n')}\n${requirements}`;
  if (isEmpty(requirements)) return { python: settings.python, readOnly: baseRuntime };
  const hash = createHash('sha256')
    .update(base)
    .update('\0')
    .update(requirements)
    .update('\0')
    .update(settings.pipArgs.join('\0'))
    .digest('hex')
    .slice(0, 24);
  const dir = join(settings.envDir, hash);
  const env = { python: join(dir, 'bin', 'python'), readOnly: [dir, ...baseRuntime] };
  if (existsSync(join(dir, '.complete'))) return env;
  let pending = builds.get(hash);
  if (!pending) {
    pending = build(dir, hash, requirements, settings, log).then(() => env);
    builds.set(hash, pending);
    pending.then(
      () => builds.delete(hash),
      () => builds.delete(hash),
    );
  }
  return pending;
}

async function build(
  dir: string,
  hash: string,
  requirements: string,
  settings: SandboxSettings,
  log: Logger,
): Promise<void> {
  await mkdir(settings.envDir, { recursive: true, mode: 0o755 });
  await chmod(settings.envDir, 0o755);
  const stage = await mkdtemp(join(settings.envDir, `.build-${hash}-`));
  const inputs = `${stage}.in`;
  const uid = isRoot ? settings.uidBase + 65_536 + randomInt(65_536) : null;
  const started = Date.now();
  try {
    await chmod(stage, 0o755);
    // Explicit modes after creation: temper's umask 077 masks those given to mkdir/writeFile,
    // and the build runs as another uid.
    await mkdir(inputs);
    await chmod(inputs, 0o755);
    await writeFile(join(inputs, 'requirements.txt'), requirements);
    await chmod(join(inputs, 'requirements.txt'), 0o644);
    if (uid !== null) await chown(stage, uid, uid);
    log.info({ env: hash, dir }, 'building a Python evaluator environment (pip install)');
    const cmd = sandboxCommand(
      {
        codeDir: inputs,
        runnerDir: inputs,
        readOnly: [runtimePrefix(realpathSync(settings.python)), ...localPaths(settings.pipArgs)],
        readWrite: [stage],
        allowNetwork: true,
        uid,
        argv: [
          '/bin/sh',
          '-c',
          // The environment is read by other sandbox uids: not the worker's umask 077.
          'umask 022 && "$BASE_PYTHON" -m venv "$STAGE" && exec "$STAGE/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -r "$REQUIREMENTS" "$@"',
          'build',
          ...settings.pipArgs,
        ],
        env: {
          PATH: '/usr/local/bin:/usr/bin:/bin',
          HOME: '/tmp',
          LANG: 'C.UTF-8',
          BASE_PYTHON: settings.python,
          STAGE: stage,
          REQUIREMENTS: `${SANDBOX_CODE_DIR}/requirements.txt`,
          PIP_NO_CACHE_DIR: '1',
        },
        limits: { memoryMb: Math.max(settings.memoryMb, 4096), maxProcesses: 256, fileMb: null },
      },
      settings,
    );
    await run(cmd, settings.buildSeconds * 1000, (line) =>
      log.info({ env: hash, pip: line }, 'evaluator environment build'),
    );
    // Nobody but the worker may change it from now on (sandboxes only ever bind it read-only).
    if (uid !== null) await run({ file: 'chown', args: ['-R', '0:0', stage], env: {} }, 600_000);
    await writeFile(join(stage, '.complete'), `${new Date().toISOString()}\n`);
    try {
      await rename(stage, dir);
    } catch (error) {
      // Another worker finished the same environment first: use that one.
      if (!existsSync(join(dir, '.complete'))) throw error;
      await rm(stage, { recursive: true, force: true });
    }
    log.info({ env: hash, seconds: (Date.now() - started) / 1000 }, 'evaluator environment ready');
  } catch (error) {
    await rm(stage, { recursive: true, force: true });
    throw new Error(
      `building the Python environment from requirements.txt failed: ${(error as Error).message}`,
    );
  } finally {
    await rm(inputs, { recursive: true, force: true });
  }
}

function run(
  cmd: { file: string; args: string[]; env: Record<string, string> },
  timeoutMs: number,
  onLine: (line: string) => void = () => undefined,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd.file, cmd.args, {
      env: cmd.env,
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let tail = '';
    const take = (chunk: Buffer) => {
      const text = chunk.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split('\n')) if (line.trim()) onLine(line.trim());
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    child.stdio[3]?.on('data', () => undefined);
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {}
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else
        reject(
          new Error(
            signal === 'SIGKILL'
              ? `it took longer than ${timeoutMs / 1000} s`
              : `${tail.trim().split('\n').slice(-3).join(' | ')}`,
          ),
        );
    });
  });
}

/**
 * The `temper` CLI as a subprocess: one-shot verbs (`temper(...)`) and a `temper up` stack
 * kept running in the background for a test file, each with its own TEMPER_HOME.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** process.env without TEMPER_* settings (but with the Temporal binary's), plus `extra`. */
export function cliEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const keep = (k: string) => !k.startsWith('TEMPER_') || k.startsWith('TEMPER_TEMPORAL_BIN');
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => keep(k)));
  return { ...base, ...extra };
}

const cliArgs = (args: string[]) => ['--import', 'tsx', 'src/cli/main.ts', ...args];

export function temper(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 120_000,
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      cliArgs(args),
      { cwd: ROOT, env: cliEnv(env), timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export interface UpProcess {
  child: ChildProcess;
  ready: Record<string, unknown>;
  stderr: string[];
  /** Resolves with the exit code (null if killed by a signal). */
  exited: Promise<number | null>;
}

/** Starts `temper up -o json` on free ports and resolves at its stack_ready line. */
export async function startUp(home: string, timeoutMs = 90_000): Promise<UpProcess> {
  const child = spawn(
    process.execPath,
    cliArgs(['up', '--api-port', '0', '--temporal-port', '0', '--threads', '1', '-o', 'json']),
    { cwd: ROOT, env: cliEnv({ TEMPER_HOME: home }), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('temper up: no stack_ready line')), timeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`temper up exited with ${code}:\n${stderr.join('\n')}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.includes('"stack_ready"')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line) as Record<string, unknown>);
    });
  });
  return { child, ready, stderr, exited };
}

/** Every process below `pid` now (children, their children, ...), from /proc. */
export function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(entry), ppid);
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent)
      if (pp === p) {
        found.push(child);
        walk(child);
      }
  };
  walk(pid);
  return found;
}

/** Running (a zombie waiting for a reaper counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

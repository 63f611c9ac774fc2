// Small helpers for the child processes the project starts (dev servers, test servers).
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';

/** A TCP port that is free on `ip` right now. */
export function getFreePort(ip = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, ip, () => {
      const addr = probe.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      probe.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port found'))));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Whether process `pid` exists (EPERM: it does, but belongs to another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Resolves true once the child has exited, false if it is still running after timeoutMs. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    function onExit(): void {
      clearTimeout(timer);
      resolve(true);
    }
    child.once('exit', onExit);
  });
}

const SETPRIV = '/usr/bin/setpriv';

/**
 * The command line that runs `file args` tied to this process: on Linux the child gets a
 * parent-death signal (SIGKILL), so it dies with this process even when this process is
 * SIGKILLed and has no chance to clean up. util-linux's setpriv sets PR_SET_PDEATHSIG and
 * execs a tiny sh that closes the race (this process dying between fork and prctl, when no
 * signal would ever come) by checking that its parent is still `process.pid`, then execs
 * the real program; the pid stays the same across the execs, so the caller's ChildProcess
 * (kill, exit code) is the program's. The signal belongs to the thread that spawned the
 * child, which in Node is the main thread. Elsewhere (no setpriv) the command is unchanged.
 * Every launcher of a long-lived child (pods, replicas, the Temporal dev server) uses this.
 */
export function tiedToParent(file: string, args: readonly string[]): [string, string[]] {
  if (process.platform !== 'linux' || !existsSync(SETPRIV)) return [file, [...args]];
  const guard = 'if [ "$PPID" != "$1" ]; then exit 70; fi; shift; exec "$@"';
  return [
    SETPRIV,
    [
      '--pdeathsig',
      'KILL',
      '--',
      '/bin/sh',
      '-c',
      guard,
      'temper-tied',
      String(process.pid),
      file,
      ...args,
    ],
  ];
}

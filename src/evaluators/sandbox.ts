/**
 * The command line that runs one evaluator process in its own sandbox: kernel limits
 * (prlimit), an unprivileged uid (setpriv, when the worker is root), and bubblewrap's
 * namespaces with a filesystem view of only the runtime (read-only), the evaluator's code
 * (read-only), its environment (read-only) and a small private /tmp. No network namespace is
 * shared unless the evaluator declares it needs the network.
 *
 * Nothing of the worker's environment crosses: the process gets exactly `env` (PATH, HOME,
 * locale), passed through the process environment rather than argv (argv is world-readable in
 * /proc). The account's secrets are not in it: they reach the runner over its stdin (see
 * evaluator-process.ts), so nothing an account chooses is in the launch chain's environment.
 */
import { existsSync, lstatSync, readlinkSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { SandboxSettings } from './settings.js';

const SYSTEM_LINKS = ['bin', 'lib', 'lib32', 'lib64', 'libx32', 'sbin'];
/** What name resolution and TLS need, bound only for evaluators that may use the network. */
const NETWORK_ETC = [
  '/etc/resolv.conf',
  '/etc/hosts',
  '/etc/nsswitch.conf',
  '/etc/gai.conf',
  '/etc/ssl',
  '/etc/ca-certificates',
  '/etc/ca-certificates.conf',
];

export const SANDBOX_CODE_DIR = '/evaluator';
export const SANDBOX_RUNNER_DIR = '/runner';

export interface SandboxSpec {
  /** Host folder with the evaluator's files (bound read-only at /evaluator, the cwd). */
  codeDir: string;
  /** Host folder with the runner script (bound read-only at /runner). */
  runnerDir: string;
  /** Further host paths bound read-only at the same path (a venv, a runtime outside /usr). */
  readOnly: string[];
  /** Host paths bound writable at the same path (only an environment being built). */
  readWrite?: string[];
  /** Limits other than the evaluator's (an environment build needs more room). */
  limits?: { memoryMb: number; maxProcesses: number; fileMb: number | null };
  allowNetwork: boolean;
  /** uid/gid to run as (the worker is root), or null: the worker's own uid, mapped to nobody. */
  uid: number | null;
  /** The command inside the sandbox. */
  argv: string[];
  env: Record<string, string>;
}

export interface SandboxCommand {
  file: string;
  args: string[];
  env: Record<string, string>;
}

function which(name: string): string {
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin']) {
    const p = `${dir}/${name}`;
    if (existsSync(p)) return p;
  }
  throw new Error(
    `evaluator sandbox: \`${name}\` is not installed (Debian: apt-get install ${name === 'bwrap' ? 'bubblewrap' : 'util-linux'}); scripts/setup.sh installs it`,
  );
}

/** The CPU seconds one process may use in its life (RLIMIT_CPU); the runner is recycled before. */
export function processCpuSeconds(settings: SandboxSettings): number {
  return Math.max(600, Math.ceil(settings.cpuSeconds * 20));
}

/** Mount arguments that recreate the host's /bin, /lib... (links into /usr on merged-usr). */
function systemMounts(): string[] {
  const args = ['--ro-bind', '/usr', '/usr'];
  for (const name of SYSTEM_LINKS) {
    const path = `/${name}`;
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(path);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(path), path);
    else if (st.isDirectory()) args.push('--ro-bind', path, path);
  }
  if (existsSync('/etc/ld.so.cache'))
    args.push('--ro-bind', '/etc/ld.so.cache', '/etc/ld.so.cache');
  return args;
}

/** True when `path` is already visible through /usr (or the code, runner folders). */
function covered(path: string): boolean {
  const p = resolve(path);
  return p === '/usr' || p.startsWith('/usr/');
}

export function sandboxCommand(spec: SandboxSpec, settings: SandboxSettings): SandboxCommand {
  const bwrap = which('bwrap');
  const prlimit = which('prlimit');
  const mib = 1024 * 1024;
  const cpu = processCpuSeconds(settings);
  const own = spec.limits ?? {
    memoryMb: settings.memoryMb,
    maxProcesses: settings.maxProcesses,
    fileMb: settings.scratchMb,
  };
  const limits = [
    `--as=${own.memoryMb * mib}`,
    // Threads count as processes here; the two bwrap processes too.
    `--nproc=${own.maxProcesses + 2}`,
    `--cpu=${cpu}:${cpu + 5}`,
    ...(own.fileMb === null ? [] : [`--fsize=${own.fileMb * mib}`]),
    '--core=0',
    '--nofile=1024',
  ];
  const identity =
    spec.uid === null
      ? []
      : [
          which('setpriv'),
          `--reuid=${spec.uid}`,
          `--regid=${spec.uid}`,
          '--clear-groups',
          '--no-new-privs',
          '--inh-caps=-all',
          '--',
        ];
  const view = [
    '--unshare-user',
    '--unshare-ipc',
    '--unshare-pid',
    '--unshare-uts',
    '--unshare-cgroup-try',
    ...(spec.allowNetwork ? [] : ['--unshare-net']),
    ...(spec.uid === null ? ['--uid', '65534', '--gid', '65534'] : []),
    '--disable-userns',
    '--die-with-parent',
    '--new-session',
    '--as-pid-1',
    '--cap-drop',
    'ALL',
    '--hostname',
    'evaluator',
    ...systemMounts(),
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--size',
    String(settings.scratchMb * mib),
    '--tmpfs',
    '/tmp',
  ];
  if (spec.allowNetwork)
    for (const p of NETWORK_ETC) if (existsSync(p)) view.push('--ro-bind', p, p);
  for (const p of spec.readOnly) {
    if (covered(p)) continue;
    view.push('--ro-bind', p, p);
  }
  for (const p of spec.readWrite ?? []) view.push('--bind', p, p);
  view.push(
    '--ro-bind',
    spec.codeDir,
    SANDBOX_CODE_DIR,
    '--ro-bind',
    spec.runnerDir,
    SANDBOX_RUNNER_DIR,
    '--chdir',
    SANDBOX_CODE_DIR,
    '--info-fd',
    '3',
  );
  return {
    file: prlimit,
    args: [...limits, '--', ...identity, bwrap, ...view, '--', ...spec.argv],
    env: spec.env,
  };
}

/** Whether a uid other than the owner's can reach `path`: every folder above it searchable. */
export function reachableByOthers(path: string): boolean {
  for (let dir = dirname(resolve(path)); dir !== dirname(dir); dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
  }
  return (statSync(path).mode & 0o005) === 0o005;
}

/** The install prefix of a runtime binary (…/bin/node → …), to bind it when outside /usr. */
export function runtimePrefix(binary: string): string {
  return dirname(dirname(binary));
}

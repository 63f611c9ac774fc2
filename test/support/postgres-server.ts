/**
 * A private PostgreSQL server for tests: initdb into a temporary directory, then `postgres`
 * on a free loopback port with trust authentication, stopped and deleted afterwards.
 *
 * The binaries come from Debian's `postgresql` package (/usr/lib/postgresql/<major>/bin),
 * which scripts/setup.sh installs; TEMPER_PG_BIN_DIR overrides the directory. A missing
 * server fails with the command that installs it; nothing is downloaded here. PostgreSQL
 * refuses to run as root, so under root both initdb and postgres run as the `postgres` OS
 * user (created by the package) through `runuser`.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { getFreePort, sleep, waitForExit } from '../../src/util/processes.js';

export interface LocalPostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres (the maintenance database). */
  readonly url: string;
  readonly port: number;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Fast shutdown (SIGINT), then deletes the data directory. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;
const PG_ROOT = '/usr/lib/postgresql';
const SETUP_HINT =
  "Run `bash scripts/setup.sh` (it installs Debian's `postgresql` package) or set TEMPER_PG_BIN_DIR.";

/** The newest installed major version's bin directory that has initdb and postgres. */
export function postgresBinDir(): string {
  const override = process.env.TEMPER_PG_BIN_DIR;
  const candidates = override
    ? [override]
    : (existsSync(PG_ROOT) ? readdirSync(PG_ROOT) : [])
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
        .map((v) => join(PG_ROOT, v, 'bin'));
  const found = candidates.find(
    (dir) => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres')),
  );
  if (found === undefined)
    throw new Error(
      `the PostgreSQL server is not installed: no initdb and postgres in ${override ?? `${PG_ROOT}/*/bin`}. ${SETUP_HINT}`,
    );
  return found;
}

/** How to run a PostgreSQL binary: directly, or as the postgres OS user when we are root. */
interface RunAs {
  prefix: string[];
  /** Gives the directory to the user the server runs as. */
  own(dir: string): void;
}

function runAs(): RunAs {
  if (process.getuid?.() !== 0) return { prefix: [], own: () => {} };
  const entry = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .find((fields) => fields[0] === 'postgres');
  if (entry === undefined)
    throw new Error(`PostgreSQL will not run as root and there is no postgres user. ${SETUP_HINT}`);
  const uid = Number(entry[2]);
  const gid = Number(entry[3]);
  return { prefix: ['runuser', '-u', 'postgres', '--'], own: (dir) => chownSync(dir, uid, gid) };
}

function command(user: RunAs, binary: string, args: string[]): [string, string[]] {
  const [first, ...rest] = [...user.prefix, binary, ...args];
  return [first!, rest];
}

async function initdb(user: RunAs, bin: string, data: string): Promise<void> {
  const [cmd, args] = command(user, join(bin, 'initdb'), [
    '--pgdata',
    data,
    '--username',
    'postgres',
    '--auth',
    'trust',
    '--encoding',
    'UTF8',
    '--locale',
    'C',
    '--no-sync', // a throwaway cluster: skip the fsyncs that make initdb slow
  ]);
  try {
    await promisify(execFile)(cmd, args, { timeout: START_TIMEOUT_MS });
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message: string };
    throw new Error(`initdb failed: ${stderr || message}`);
  }
}

/** The postmaster's pid, from the first line of postmaster.pid (runuser is its parent). */
function postmasterPid(data: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Starts postgres on a free port; retries with another port when the chosen one was taken. */
async function launch(
  user: RunAs,
  bin: string,
  dir: string,
  data: string,
): Promise<{ child: ChildProcess; port: number }> {
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await getFreePort();
    const [cmd, args] = command(user, join(bin, 'postgres'), [
      '-D',
      data,
      '-p',
      String(port),
      '-h',
      '127.0.0.1',
      '-k',
      dir, // the Unix socket lives with the data, not in /var/run/postgresql
      // Durability is worthless for a test cluster; these make every commit cheap.
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
    ]);
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    const keep = (chunk: Buffer) => {
      output.push(chunk.toString());
      if (output.length > 200) output.shift();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      if (await canConnect(url)) return { child, port };
      await sleep(100);
    }
    const exitedEarly = child.exitCode !== null || child.signalCode !== null;
    await stopServer(child, data);
    lastError = new Error(
      `postgres did not start on port ${port} within ${START_TIMEOUT_MS} ms${exitedEarly ? ` (exited with ${child.exitCode ?? child.signalCode})` : ''}:\n${output.join('').slice(-4000)}`,
    );
    if (!exitedEarly) break;
  }
  throw lastError;
}

/** SIGINT is PostgreSQL's fast shutdown: disconnect clients, checkpoint, exit. */
async function stopServer(child: ChildProcess, data: string): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const pid = postmasterPid(data);
  signal(pid ?? child.pid, 'SIGINT');
  if (await waitForExit(child, STOP_GRACE_MS)) return;
  signal(pid ?? child.pid, 'SIGQUIT'); // immediate shutdown
  if (await waitForExit(child, STOP_GRACE_MS)) return;
  signal(pid, 'SIGKILL');
  child.kill('SIGKILL');
  await waitForExit(child, STOP_GRACE_MS);
}

function signal(pid: number | undefined, name: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

export async function startPostgres(): Promise<LocalPostgres> {
  const bin = postgresBinDir();
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'temper-pg-'));
  const data = join(dir, 'data');
  // If the test process dies without stop(), do not leave a server running.
  const onExit = () => signal(postmasterPid(data), 'SIGQUIT');
  process.once('exit', onExit);
  try {
    user.own(dir);
    await initdb(user, bin, data);
    const { child, port } = await launch(user, bin, dir, data);
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    return {
      url,
      port,
      createDatabase: async (name) => {
        const admin = new pg.Client({ connectionString: url });
        await admin.connect();
        try {
          await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
        } finally {
          await admin.end();
        }
        return `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(name)}`;
      },
      stop: async () => {
        await stopServer(child, data);
        process.off('exit', onExit);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    onExit();
    process.off('exit', onExit);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Real object-store servers for tests, each a child process on a free loopback port:
 *   - S3:  moto's server mode (PyPI `moto[server]`), from the venv scripts/setup.sh makes at
 *          ${TEMPER_S3_VENV:-~/.cache/temper/s3venv}.
 *   - GCS: fake-gcs-server (Go module github.com/fsouza/fake-gcs-server), built by
 *          scripts/setup.sh into ${TEMPER_BIN_DIR:-~/.cache/temper/bin}.
 * Nothing is downloaded here: a missing server fails with the command that installs it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { getFreePort, sleep, waitForExit } from '../../src/util/processes.js';

export interface LocalObjectServer {
  /** http://127.0.0.1:PORT */
  readonly endpoint: string;
  readonly pid: number;
  /** Creates a bucket (idempotent). */
  createBucket(name: string): Promise<void>;
  /** Stops the server: SIGTERM, then SIGKILL after 5 s. */
  stop(): Promise<void>;
}

const CACHE_DIR = join(homedir(), '.cache', 'temper');
const START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;

export function s3ServerCommand(): { command: string; args: string[] } {
  const venv = process.env.TEMPER_S3_VENV ?? join(CACHE_DIR, 's3venv');
  const python = join(venv, 'bin', 'python');
  const launcher = join(import.meta.dirname, 'moto-server.py');
  if (!existsSync(python))
    throw new Error(
      `the S3 test server (moto) is not installed: no ${python}. Run \`bash scripts/setup.sh\` (or set TEMPER_S3_VENV).`,
    );
  return { command: python, args: [launcher] };
}

export function gcsServerBinary(): string {
  const bin = join(process.env.TEMPER_BIN_DIR ?? join(CACHE_DIR, 'bin'), 'fake-gcs-server');
  if (!existsSync(bin))
    throw new Error(
      `the GCS test server is not installed: no ${bin}. Run \`bash scripts/setup.sh\` (or set TEMPER_BIN_DIR).`,
    );
  return bin;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if (!(await waitForExit(child, STOP_GRACE_MS))) {
    child.kill('SIGKILL');
    await waitForExit(child, STOP_GRACE_MS);
  }
}

/**
 * Spawns a server on a free port and waits until `probe` answers; retries with another
 * port when the process dies at once (its port was taken in the meantime).
 */
async function launch(
  name: string,
  argv: (port: number) => { command: string; args: string[] },
  probePath: string,
): Promise<{ child: ChildProcess; endpoint: string }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await getFreePort();
    const { command, args } = argv(port);
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PYTHONUNBUFFERED: '1' },
    });
    const output: string[] = [];
    const keep = (data: Buffer) => {
      output.push(data.toString());
      if (output.length > 200) output.shift();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let spawnError: Error | undefined;
    child.once('error', (error) => {
      spawnError = error;
    });
    const endpoint = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (spawnError) throw new Error(`${name}: cannot start ${command}: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) break;
      try {
        const res = await fetch(endpoint + probePath, { signal: AbortSignal.timeout(2_000) });
        await res.arrayBuffer();
        if (res.status < 500) return { child, endpoint };
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    const exitedEarly = child.exitCode !== null || child.signalCode !== null;
    await stopChild(child);
    lastError = new Error(
      `${name} did not start on port ${port} within ${START_TIMEOUT_MS} ms${exitedEarly ? ` (exited with ${child.exitCode ?? child.signalCode})` : ''}:\n${output.join('').slice(-4000)}`,
    );
    if (!exitedEarly) break;
  }
  throw lastError;
}

async function expectOk(res: Response, what: string, okStatuses: number[] = []): Promise<void> {
  const text = await res.text();
  if (!res.ok && !okStatuses.includes(res.status))
    throw new Error(`${what}: HTTP ${res.status}: ${text.slice(0, 500)}`);
}

/** moto's S3 server, with every request handled one at a time (see moto-server.py). */
export async function startS3Server(): Promise<LocalObjectServer> {
  const base = s3ServerCommand();
  const { child, endpoint } = await launch(
    'moto S3 server',
    (port) => ({
      command: base.command,
      args: [...base.args, '--host', '127.0.0.1', '--port', String(port)],
    }),
    '/moto-api/',
  );
  return {
    endpoint,
    pid: child.pid ?? -1,
    // moto does not check signatures: a plain path-style PUT creates the bucket.
    createBucket: async (name) =>
      expectOk(
        await fetch(`${endpoint}/${name}`, { method: 'PUT' }),
        `create S3 bucket ${name}`,
        [409],
      ),
    stop: () => stopChild(child),
  };
}

/** fake-gcs-server, in-memory backend, plain HTTP. */
export async function startGcsServer(): Promise<LocalObjectServer> {
  const bin = gcsServerBinary();
  const { child, endpoint } = await launch(
    'fake-gcs-server',
    (port) => ({
      command: bin,
      args: [
        '-scheme',
        'http',
        '-host',
        '127.0.0.1',
        '-port',
        String(port),
        '-backend',
        'memory',
        '-external-url',
        `http://127.0.0.1:${port}`,
        '-public-host',
        `127.0.0.1:${port}`,
        '-log-level',
        'warn',
      ],
    }),
    '/storage/v1/b',
  );
  return {
    endpoint,
    pid: child.pid ?? -1,
    createBucket: async (name) =>
      expectOk(
        await fetch(`${endpoint}/storage/v1/b?project=test`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name }),
        }),
        `create GCS bucket ${name}`,
        [409],
      ),
    stop: () => stopChild(child),
  };
}

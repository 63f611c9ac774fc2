/**
 * A Temporal dev server (`temporal server start-dev`, SQLite-backed) as a child process:
 * start it on a free port, wait until its frontend answers for the namespace, stop it.
 *
 * Used by integration tests and by `temper up`. The binary comes from temporal-binary.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Connection } from '@temporalio/client';
import { getFreePort, sleep, tiedToParent, waitForExit } from '../util/processes.js';
import { resolveTemporalBinary } from './temporal-binary.js';

export interface DevServerOptions {
  /** Path of the `temporal` executable; default resolveTemporalBinary(). */
  binary?: string;
  /** Address the frontend binds; default 127.0.0.1. */
  ip?: string;
  /** Frontend gRPC port; default a free port chosen at start. */
  port?: number;
  /** Namespace to create and wait for; default "default". */
  namespace?: string;
  /**
   * SQLite file that keeps the server's state. Default: a file in a fresh temporary
   * directory that stop() deletes. A file given here is kept.
   */
  dbFilename?: string;
  /** Server log level; default "warn". */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** How long to wait for the server to serve the namespace; default 30 s. */
  startTimeoutMs?: number;
  /** Extra arguments for `temporal server start-dev` (for example --dynamic-config-value). */
  extraArgs?: readonly string[];
  /** Receives every line the server writes (JSON log lines and a short banner). */
  onLog?: (line: string) => void;
}

export interface TemporalDevServer {
  /** `host:port` of the frontend, for Connection.connect / NativeConnection.connect. */
  readonly address: string;
  readonly namespace: string;
  readonly pid: number;
  readonly dbFilename: string;
  /** Stops the server (SIGTERM, then SIGKILL after 10 s) and removes its temporary files. */
  stop(): Promise<void>;
}

export class TemporalDevServerError extends Error {
  readonly code = 'TEMPORAL_DEV_SERVER_FAILED';
  override readonly name = 'TemporalDevServerError';

  constructor(
    message: string,
    /** The process exited before serving (for example: its port was taken). */
    readonly exitedEarly = false,
  ) {
    super(message);
  }
}

const LOG_TAIL_LINES = 40;
const STOP_GRACE_MS = 10_000;

/** Starts `temporal server start-dev` and resolves once `namespace` is served. */
export async function startDevServer(options: DevServerOptions = {}): Promise<TemporalDevServer> {
  const binary = options.binary ?? resolveTemporalBinary();
  const ip = options.ip ?? '127.0.0.1';
  const namespace = options.namespace ?? 'default';
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  const tempDir = options.dbFilename
    ? undefined
    : await mkdtemp(join(tmpdir(), 'temper-temporal-'));
  const dbFilename = options.dbFilename ?? join(tempDir!, 'temporal.sqlite');
  const cleanup = async () => {
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  };

  // A port chosen here can be taken by someone else before the server binds it; then the
  // server exits at once and we try another one.
  const attempts = options.port === undefined ? 3 : 1;
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const port = options.port ?? (await getFreePort(ip));
    try {
      return await launch(options, {
        binary,
        ip,
        port,
        namespace,
        dbFilename,
        startTimeoutMs,
        cleanup,
      });
    } catch (error) {
      lastError = error;
      if (!(error instanceof TemporalDevServerError && error.exitedEarly)) break;
    }
  }
  await cleanup();
  throw lastError;
}

async function launch(
  options: DevServerOptions,
  p: {
    binary: string;
    ip: string;
    port: number;
    namespace: string;
    dbFilename: string;
    startTimeoutMs: number;
    cleanup: () => Promise<void>;
  },
): Promise<TemporalDevServer> {
  const args = [
    'server',
    'start-dev',
    '--headless',
    '--ip',
    p.ip,
    '--port',
    String(p.port),
    '--namespace',
    p.namespace,
    '--db-filename',
    p.dbFilename,
    '--log-format',
    'json',
    '--log-level',
    options.logLevel ?? 'warn',
    ...(options.extraArgs ?? []),
  ];
  const address = `${p.ip}:${p.port}`;
  // Tied to this process: a SIGKILLed stack takes its dev server with it.
  const [file, tiedArgs] = tiedToParent(p.binary, args);
  const child = spawn(file, tiedArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      tail.push(line);
      if (tail.length > LOG_TAIL_LINES) tail.shift();
      options.onLog?.(line);
    });
  }
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  // Never leave a server behind when this process exits without calling stop().
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.off('exit', killOnExit);
      const running =
        child.pid !== undefined && child.exitCode === null && child.signalCode === null;
      if (running) {
        child.kill('SIGTERM');
        if (!(await waitForExit(child, STOP_GRACE_MS))) {
          child.kill('SIGKILL');
          await waitForExit(child, STOP_GRACE_MS);
        }
      }
    })();
    return stopped;
  };

  const failure = (reason: string, exitedEarly: boolean) => {
    const logs = tail.length > 0 ? `\n--- last server output ---\n${tail.join('\n')}` : '';
    return new TemporalDevServerError(
      `Temporal dev server (${p.binary} ${args.join(' ')}) ${reason}${logs}`,
      exitedEarly,
    );
  };

  const deadline = Date.now() + p.startTimeoutMs;
  let lastProbeError = '';
  while (true) {
    if (spawnError) {
      await stop();
      throw failure(`could not be started: ${spawnError.message}`, false);
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw failure(`exited during startup (${child.exitCode ?? child.signalCode})`, true);
    }
    if (Date.now() > deadline) {
      await stop();
      throw failure(
        `did not serve namespace "${p.namespace}" at ${address} within ${p.startTimeoutMs} ms` +
          ` (last probe: ${lastProbeError})`,
        false,
      );
    }
    try {
      // A fresh channel per probe (no reconnect backoff), always closed: Connection.connect
      // would leave a failed channel open.
      const connection = Connection.lazy({ address, connectTimeout: 1_000 });
      try {
        await connection.ensureConnected();
        await connection.workflowService.describeNamespace({ namespace: p.namespace });
      } finally {
        await connection.close();
      }
      break;
    } catch (error) {
      lastProbeError = error instanceof Error ? error.message : String(error);
      await sleep(100);
    }
  }

  const pid = child.pid ?? -1;
  return {
    address,
    namespace: p.namespace,
    pid,
    dbFilename: p.dbFilename,
    stop: async () => {
      await stop();
      await p.cleanup();
    },
  };
}

/**
 * The local launcher: trainer pods as processes on this machine. Each job has a folder
 * `<stateDir>/<jobId>/` with `job.json` (spec, pid, log path), `state.json` (written by the
 * pod: address, serving/stopped, why) and `pod.log` (the pod's JSON log). Pods bind a free
 * loopback port (port 0) and report it in state.json; they run detached, so a pod outlives the
 * process that launched it and another process can attach to it by job id, until it is
 * stopped or its inactivity timeout ends it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ServingStatus } from '../../gen/temper/trainer/v1/trainer_pb.js';
import { processAlive, tiedToParent } from '../../util/processes.js';
import { newTrainerToken, TRAINER_TOKEN_ENV } from '../auth.js';
import { createTrainerClient } from '../client.js';
import { parseEngineSettings } from '../engine-settings.js';
import { TrainerError } from '../errors.js';
import type { TrainerState } from '../serve.js';
import type {
  Launcher,
  StopOptions,
  TrainerEndpoint,
  TrainerJobInfo,
  TrainerLaunchSpec,
} from './types.js';

export interface LocalLauncherOptions {
  /** Job folders live here (default $TEMPER_HOME/trainers, else ~/.temper/trainers). */
  stateDir?: string;
  /** argv prefix that runs the temper CLI (default: this checkout's CLI under node). */
  command?: string[];
  /** How long a pod may take to serve (default 60 s). */
  startTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /**
   * Pods die with the launching process, even a SIGKILLed one (parent-death signal), instead
   * of outliving it for another process to attach to: what a stack (`temper up`, a worker)
   * wants, since it replaces lost pods from their checkpoints when it starts again.
   */
  diesWithParent?: boolean;
  /** Interface pods bind (default 127.0.0.1). */
  host?: string;
  /**
   * Checkpoint store root every pod gets (default file://<stateDir>/../checkpoints, shared by
   * the pods so that one job can resume from another's checkpoints).
   */
  checkpointUrl?: string;
}

interface JobRecord {
  jobId: string;
  pid: number;
  spec: TrainerLaunchSpec;
  createdAt: string;
  logPath: string;
  /** The pod's token (the job folder is private to the user: umask 077). */
  token: string;
  /** Set by the launcher when it had to kill the pod or saw it die. */
  stoppedReason?: string;
}

interface Owned {
  child: ChildProcess;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  exited: Promise<void>;
}

const JOB_ID = /^[a-z][a-z0-9-]{0,61}[a-z0-9]$/;

/** argv that runs this checkout's CLI: the compiled one under dist/, or the source through tsx. */
export function defaultTemperCommand(): string[] {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const main = fileURLToPath(new URL('../../cli/main.ts', here));
    return [process.execPath, '--import', import.meta.resolve('tsx'), main];
  }
  return [process.execPath, fileURLToPath(new URL('../../cli/main.js', here))];
}

function defaultStateDir(): string {
  return join(process.env.TEMPER_HOME ?? join(homedir(), '.temper'), 'trainers');
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, path);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function tail(path: string, lines = 20): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Resolves once the pod at `address` answers Health as serving; rejects after `timeoutMs`. */
export async function waitServing(
  address: string,
  token: string,
  timeoutMs: number,
): Promise<void> {
  const client = createTrainerClient(address, token);
  const deadline = Date.now() + timeoutMs;
  try {
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        const h = await client.health(
          {},
          { timeoutMs: Math.max(100, Math.min(2_000, deadline - Date.now())) },
        );
        if (h.status === ServingStatus.SERVING) return;
        last = new Error(`status ${ServingStatus[h.status]}`);
      } catch (error) {
        last = error;
      }
      await sleep(50);
    }
    throw new TrainerError(
      'launch_failed',
      `trainer at ${address} did not become healthy within ${timeoutMs} ms: ${last instanceof Error ? last.message : String(last)}`,
    );
  } finally {
    client.close();
  }
}

export class LocalProcessLauncher implements Launcher {
  readonly kind = 'local';
  readonly stateDir: string;
  private readonly command: string[];
  private readonly startTimeoutMs: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly diesWithParent: boolean;
  private readonly host: string;
  readonly checkpointUrl: string;
  private readonly owned = new Map<string, Owned>();

  constructor(options: LocalLauncherOptions = {}) {
    this.stateDir = options.stateDir ?? defaultStateDir();
    this.command = options.command ?? defaultTemperCommand();
    this.startTimeoutMs = options.startTimeoutMs ?? 60_000;
    this.env = options.env ?? process.env;
    this.diesWithParent = options.diesWithParent ?? false;
    this.host = options.host ?? '127.0.0.1';
    this.checkpointUrl =
      options.checkpointUrl ?? pathToFileURL(join(dirname(this.stateDir), 'checkpoints')).href;
  }

  private paths(jobId: string) {
    const dir = join(this.stateDir, jobId);
    return {
      dir,
      job: join(dir, 'job.json'),
      state: join(dir, 'state.json'),
      log: join(dir, 'pod.log'),
    };
  }

  async launch(spec: TrainerLaunchSpec): Promise<TrainerEndpoint> {
    const jobId = spec.jobId ?? `trainer-${randomBytes(4).toString('hex')}`;
    if (!JOB_ID.test(jobId)) {
      throw new TrainerError(
        'invalid_argument',
        `trainer job id '${jobId}' must be 2-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'`,
      );
    }
    // Checked here, before a process starts, so a bad setting is an error naming it.
    const engine = parseEngineSettings(spec.engine);
    const paths = this.paths(jobId);
    const existing = await this.get(jobId);
    if (existing && (existing.state === 'running' || existing.state === 'starting')) {
      throw new TrainerError('invalid_argument', `trainer job '${jobId}' is already running`);
    }
    await mkdir(paths.dir, { recursive: true });
    for (const stale of [paths.state]) if (existsSync(stale)) await writeJson(stale, {});
    const args = [
      ...this.command.slice(1),
      'trainer',
      'serve',
      '--base-model',
      spec.baseModel,
      '--host',
      this.host,
      '--port',
      '0',
      '--job-id',
      jobId,
      '--state-file',
      paths.state,
      '--lora-rank',
      String(spec.loraRank ?? 0),
      '--inactivity-timeout',
      `${spec.inactivityTimeoutMs ?? 60 * 60_000}ms`,
    ];
    if (spec.baseModelName !== undefined) args.push('--base-model-name', spec.baseModelName);
    if (spec.loraAlpha !== undefined) args.push('--lora-alpha', String(spec.loraAlpha));
    if (spec.threads !== undefined) args.push('--threads', String(spec.threads));
    args.push('--base-dtype', engine.baseDtype);
    if (engine.recompute) args.push('--recompute');
    args.push('--checkpoint-url', spec.checkpointUrl ?? this.checkpointUrl);
    if (spec.account !== undefined) args.push('--account', spec.account);
    if (spec.maxModels !== undefined) args.push('--max-models', String(spec.maxModels));
    if (spec.forwardOnly) args.push('--forward-only');
    if (spec.logLevel) args.push('--log-level', spec.logLevel);
    const token = newTrainerToken();
    const fd = openSync(paths.log, 'a');
    let child: ChildProcess;
    try {
      const [file, spawnArgs] = this.diesWithParent
        ? tiedToParent(this.command[0]!, args)
        : [this.command[0]!, args];
      child = spawn(file, spawnArgs, {
        detached: true,
        stdio: ['ignore', fd, fd],
        // In the environment, not argv: other users' `ps` shows argv.
        env: { ...this.env, [TRAINER_TOKEN_ENV]: token },
      });
    } finally {
      closeSync(fd);
    }
    const owned: Owned = { child, exit: null, exited: Promise.resolve() };
    owned.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        owned.exit = { code, signal };
        resolve();
      });
      child.once('error', (error) => {
        owned.exit = { code: -1, signal: null };
        void writeFile(paths.log, `spawn failed: ${error.message}\n`, { flag: 'a' }).catch(
          () => {},
        );
        resolve();
      });
    });
    child.unref();
    this.owned.set(jobId, owned);
    const record: JobRecord = {
      jobId,
      pid: child.pid ?? -1,
      spec: { ...spec, jobId },
      createdAt: new Date().toISOString(),
      logPath: paths.log,
      token,
    };
    await writeJson(paths.job, record);

    const deadline = Date.now() + this.startTimeoutMs;
    let address: string | undefined;
    while (!address) {
      if (owned.exit) {
        throw new TrainerError(
          'launch_failed',
          `trainer ${jobId} exited during startup (${owned.exit.signal ?? `code ${owned.exit.code}`}); log ${paths.log}:\n${await tail(paths.log)}`,
        );
      }
      if (Date.now() > deadline) {
        await this.stop(jobId, { graceMs: 1_000 });
        throw new TrainerError(
          'launch_failed',
          `trainer ${jobId} did not start within ${this.startTimeoutMs} ms; log ${paths.log}:\n${await tail(paths.log)}`,
        );
      }
      const state = await readJson<Partial<TrainerState>>(paths.state);
      if (state?.state === 'serving' && state.pid === child.pid && state.address) {
        address = state.address;
      } else {
        await sleep(25);
      }
    }
    await waitServing(address, token, Math.max(1_000, deadline - Date.now()));
    return { jobId, address, token };
  }

  async attach(jobId: string): Promise<TrainerEndpoint> {
    const info = await this.get(jobId);
    if (info?.state !== 'running') {
      throw new TrainerError(
        'unknown_trainer',
        info
          ? `trainer job '${jobId}' is ${info.state}${info.reason ? ` (${info.reason})` : ''}; launch a new one`
          : `trainer job '${jobId}' is not known to the local launcher (${this.stateDir})`,
      );
    }
    await waitServing(info.address, info.token, 5_000);
    return { jobId, address: info.address, token: info.token };
  }

  async get(jobId: string): Promise<TrainerJobInfo | undefined> {
    if (!JOB_ID.test(jobId)) return undefined;
    const paths = this.paths(jobId);
    const record = await readJson<JobRecord>(paths.job);
    if (!record) return undefined;
    const state = await readJson<Partial<TrainerState>>(paths.state);
    const owned = this.owned.get(jobId);
    const running = owned ? owned.exit === null : record.pid > 0 && processAlive(record.pid);
    const info: TrainerJobInfo = {
      jobId,
      address: state?.address ?? '',
      ...(state?.metricsAddress ? { metricsAddress: state.metricsAddress } : {}),
      token: record.token ?? '',
      state: 'starting',
      spec: record.spec,
      createdAt: record.createdAt,
      logPath: record.logPath,
      pid: record.pid,
    };
    if (running) {
      info.state = state?.state === 'serving' && state.pid === record.pid ? 'running' : 'starting';
      return info;
    }
    if (state?.state === 'stopped' && state.pid === record.pid) {
      info.state = 'stopped';
      info.reason = state.reason;
    } else {
      info.state = record.stoppedReason ? 'stopped' : 'failed';
      info.reason =
        record.stoppedReason ??
        (owned?.exit
          ? owned.exit.signal
            ? `killed by ${owned.exit.signal}`
            : `exit code ${owned.exit.code}`
          : 'process gone');
    }
    return info;
  }

  async list(): Promise<TrainerJobInfo[]> {
    let names: string[];
    try {
      names = await readdir(this.stateDir);
    } catch {
      return [];
    }
    const infos = await Promise.all(names.map((n) => this.get(n)));
    return infos.filter((i): i is TrainerJobInfo => i !== undefined);
  }

  async stop(jobId: string, options: StopOptions = {}): Promise<void> {
    const info = await this.get(jobId);
    if (!info || info.pid === undefined || info.pid <= 0) return;
    if (info.state === 'stopped' || info.state === 'failed') return;
    const graceMs = options.graceMs ?? 10_000;
    const owned = this.owned.get(jobId);
    const pid = info.pid;
    const gone = async (ms: number): Promise<boolean> => {
      if (owned) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          owned.exited,
          new Promise((r) => {
            timer = setTimeout(r, ms);
          }),
        ]);
        clearTimeout(timer);
        return owned.exit !== null;
      }
      const until = Date.now() + ms;
      while (processAlive(pid)) {
        if (Date.now() > until) return false;
        await sleep(25);
      }
      return true;
    };
    const signal = (s: NodeJS.Signals) => {
      try {
        if (owned) owned.child.kill(s);
        else process.kill(pid, s);
      } catch {
        // already gone
      }
    };
    signal('SIGTERM');
    if (await gone(graceMs)) return;
    signal('SIGKILL');
    await gone(5_000);
    const paths = this.paths(jobId);
    const record = await readJson<JobRecord>(paths.job);
    if (record)
      await writeJson(paths.job, { ...record, stoppedReason: `killed after ${graceMs} ms grace` });
  }
}

/**
 * A running trainer pod: loads the base model, serves TrainerService on host:port, stops
 * itself after the inactivity timeout, and stops cleanly on request (SIGTERM in the CLI):
 * new operations are refused, waiting ones fail with `shutting_down`, the running one
 * finishes, the server closes, and the state file records why.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { checkTrainerToken } from './auth.js';
import type { EngineSettings } from './engine-settings.js';
import { createLogger } from './log.js';
import { serveTrainerMetrics, TrainerMetrics } from './metrics.js';
import { type PodOptions, TrainerPod } from './pod.js';
import { createTrainerServer } from './server.js';

export const DEFAULT_INACTIVITY_TIMEOUT_MS = 60 * 60_000;

export interface ServeTrainerOptions extends Omit<PodOptions, 'logger' | 'inactivityTimeoutMs'> {
  host?: string;
  /** 0 = any free port (the bound address is logged and written to the state file). */
  port?: number;
  /** Port of the pod's HTTP /metrics on the same host; 0 = any free port (logged, in the state file). */
  metricsPort?: number;
  /** Stop after this long with no operation or heartbeat; 0 disables (default 60 min). */
  inactivityTimeoutMs?: number;
  /** JSON file with {state, address, pid, ...}, rewritten when the state changes. */
  stateFile?: string;
  /** How long a stop waits for the running operation and open calls (default 10 s). */
  shutdownGraceMs?: number;
  logger?: Logger;
  logLevel?: string;
  /** The pod's token: every call must present it (the CLI reads TEMPER_TRAINER_TOKEN). */
  token: string;
}

export type StopReason = 'SIGTERM' | 'SIGINT' | 'inactivity' | 'requested';

export interface TrainerState {
  state: 'serving' | 'stopped';
  jobId: string;
  pid: number;
  address: string;
  /** host:port of the pod's HTTP /metrics (Prometheus; behind the pod's token). */
  metricsAddress: string;
  baseModel: string;
  loraRank: number;
  forwardOnly: boolean;
  /** The engine settings the pod runs its models with. */
  engine: EngineSettings;
  startedAt: string;
  stoppedAt?: string;
  reason?: StopReason;
}

export interface RunningTrainer {
  address: string;
  /** host:port of the pod's /metrics. */
  metricsAddress: string;
  pod: TrainerPod;
  /** Stops the pod (idempotent); resolves once it has stopped. */
  stop(reason?: StopReason): Promise<StopReason>;
  /** Resolves with the reason once the pod has stopped. */
  readonly stopped: Promise<StopReason>;
}

async function writeState(path: string, state: TrainerState): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
  await rename(tmp, path);
}

export async function serveTrainer(options: ServeTrainerOptions): Promise<RunningTrainer> {
  const log = options.logger ?? createLogger({ level: options.logLevel });
  // Refused before the model loads: a pod without a usable token never serves.
  const token = checkTrainerToken(options.token);
  const inactivityTimeoutMs = options.inactivityTimeoutMs ?? DEFAULT_INACTIVITY_TIMEOUT_MS;
  const started = Date.now();
  const pod = await TrainerPod.load({ ...options, inactivityTimeoutMs, logger: log });
  const metrics = new TrainerMetrics(pod);
  const server = createTrainerServer(pod, log, token, metrics);
  const host = options.host ?? '127.0.0.1';
  const address = await server.listen(host, options.port ?? 0);
  const metricsServer = await serveTrainerMetrics(metrics, token, host, options.metricsPort ?? 0);
  const state: TrainerState = {
    state: 'serving',
    jobId: pod.jobId,
    pid: process.pid,
    address,
    metricsAddress: metricsServer.address,
    baseModel: pod.baseModel,
    loraRank: pod.loraRank,
    forwardOnly: pod.forwardOnly,
    engine: pod.engine,
    startedAt: new Date(started).toISOString(),
  };
  if (options.stateFile) await writeState(options.stateFile, state);
  log.info(
    {
      address,
      metricsAddress: metricsServer.address,
      jobId: pod.jobId,
      baseModel: pod.baseModel,
      loraRank: pod.loraRank,
      forwardOnly: pod.forwardOnly,
      engine: pod.engine,
      inactivityTimeoutMs,
      startupMs: Date.now() - started,
    },
    'trainer listening',
  );

  let timer: NodeJS.Timeout | undefined;
  let stopping: Promise<StopReason> | undefined;
  let resolveStopped!: (reason: StopReason) => void;
  const stopped = new Promise<StopReason>((resolve) => {
    resolveStopped = resolve;
  });

  const stop = (reason: StopReason = 'requested'): Promise<StopReason> => {
    if (stopping) return stopping;
    stopping = (async () => {
      if (timer) clearInterval(timer);
      log.info({ reason }, 'trainer stopping');
      pod.drain(reason);
      const grace = options.shutdownGraceMs ?? 10_000;
      await Promise.race([pod.idle(), new Promise((r) => setTimeout(r, grace).unref())]);
      await server.shutdown(grace);
      await metricsServer.close();
      if (options.stateFile) {
        await writeState(options.stateFile, {
          ...state,
          state: 'stopped',
          stoppedAt: new Date().toISOString(),
          reason,
        }).catch((error: unknown) => log.error({ err: String(error) }, 'cannot write state file'));
      }
      log.info({ reason }, 'trainer stopped');
      resolveStopped(reason);
      return reason;
    })();
    return stopping;
  };

  if (inactivityTimeoutMs > 0) {
    const every = Math.min(1_000, Math.max(20, Math.floor(inactivityTimeoutMs / 10)));
    timer = setInterval(() => {
      if (pod.idleMs() >= inactivityTimeoutMs) {
        log.info(
          { idleMs: pod.idleMs(), inactivityTimeoutMs },
          'no activity for the inactivity timeout',
        );
        void stop('inactivity');
      }
    }, every);
  }

  return { address, metricsAddress: metricsServer.address, pod, stop, stopped };
}

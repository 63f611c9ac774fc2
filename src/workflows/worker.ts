/**
 * `temper worker`: one per machine. It polls two task queues:
 * - the shared queue (`temper-jobs`): workflows and the control activities any host can run;
 * - its own host queue (`temper-host-{hostId}`): the activities of the trainer pods it runs.
 * A job's pod activities are routed to the host that claimed it (claimHost), so several
 * machines share jobs while Temporal does the distribution.
 */

import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  bundleWorkflowCode,
  DefaultLogger,
  type LogEntry,
  NativeConnection,
  Runtime,
  Worker,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import type { ObjectStore } from '../checkpoints/object-store/index.js';
import { DeploymentRegistry } from '../deployments/registry.js';
import type { SandboxSettings } from '../evaluators/index.js';
import type { Store } from '../store/index.js';
import type { Launcher } from '../trainer/launcher/index.js';
import { type OutboundSettings, outboundSettingsFromEnv } from '../util/outbound.js';
import { createControlActivities } from './activities/control.js';
import { createHostActivities } from './activities/host.js';
import { RolloutTracer } from './activities/remote-rollouts.js';
import { hostTaskQueue, JOB_ENDED, SHARED_TASK_QUEUE } from './types.js';
import { WorkerMetrics } from './worker-metrics.js';

export interface TemperWorkerOptions {
  /** host:port of the Temporal frontend. */
  address: string;
  namespace?: string;
  /** This machine's id: its task queue is temper-host-{hostId}. */
  hostId: string;
  store: Store;
  artifacts: ObjectStore;
  checkpoints: ObjectStore;
  launcher: Launcher;
  /** Engine threads per trainer pod. */
  threads?: number;
  /** A bundle made once (tests share one); default: bundled at start. */
  workflowBundle?: WorkflowBundleWithSourceMap;
  /** Shared queue name (tests isolate runs with their own). */
  sharedQueue?: string;
  /** Address remote RFT environments reach this host's rollout tracer at (127.0.0.1). */
  advertiseHost?: string;
  /** Limits of RFT evaluator sandboxes (default: the schema's defaults). */
  evaluatorSandbox?: SandboxSettings;
  /** Whether user URLs may reach private networks (default: TEMPER_OUTBOUND_ALLOW_PRIVATE). */
  outbound?: OutboundSettings;
}

export interface TemperWorker {
  readonly hostQueue: string;
  /** What this host's activities did (serve it with serveMetrics). */
  readonly metrics: WorkerMetrics;
  /** Stops polling, lets running activities finish their current call, closes the connection. */
  stop(): Promise<void>;
  /** Settles when both workers have stopped (rejects if one failed). */
  readonly done: Promise<void>;
}

/**
 * The Temporal SDK's process-wide runtime, logging warnings and errors to stderr. Every host
 * worker polls a host queue with activities only, by design, so the SDK's "No workflows
 * registered" warning is not one, nor are the ends of a cancellation (below). Once per process; a runtime
 * already installed is kept. Tests pass 'ERROR': the failures they cause on purpose (killed pods,
 * corrupted checkpoints) are warnings the platform rightly gives, but noise in a passing run.
 */
export function installTemporalRuntime(minLevel: 'WARN' | 'ERROR' = 'WARN'): void {
  const write = (entry: LogEntry) => {
    if (entry.message.startsWith('No workflows registered')) return;
    // An activity of a job that ended meanwhile (cancelled, say) stops with JobEnded: the
    // expected end of its work, not a failure worth a warning.
    if (
      entry.message === 'Activity failed' &&
      (entry.meta?.error as { type?: unknown } | undefined)?.type === JOB_ENDED
    )
      return;
    // Core's note that a cancelled activity's completion found nothing to complete: the
    // expected end of a cancellation race, not a problem.
    if (entry.message.startsWith('Activity not found on completion')) return;
    const meta = entry.meta === undefined ? '' : ` ${JSON.stringify(entry.meta)}`;
    process.stderr.write(`[temporal ${entry.level}] ${entry.message}${meta}\n`);
  };
  try {
    // The SDK's native core logs through the same writer (else it prints to the console itself).
    Runtime.install({
      logger: new DefaultLogger(minLevel, write),
      telemetryOptions: { logging: { filter: { core: minLevel, other: 'ERROR' }, forward: {} } },
    });
  } catch {
    // Already installed by this process (a test, or a second stack): keep that one.
  }
}

/** The workflow code, bundled (webpack, in memory) for the workers' sandbox. */
export function bundleWorkflows(): Promise<WorkflowBundleWithSourceMap> {
  const ext = extname(fileURLToPath(import.meta.url));
  return bundleWorkflowCode({
    workflowsPath: fileURLToPath(new URL(`./definitions/index${ext}`, import.meta.url)),
    logger: new DefaultLogger('WARN'),
  });
}

export async function startTemperWorker(options: TemperWorkerOptions): Promise<TemperWorker> {
  installTemporalRuntime();
  const hostQueue = hostTaskQueue(options.hostId);
  const namespace = options.namespace ?? 'default';
  const workflowBundle = options.workflowBundle ?? (await bundleWorkflows());
  const connection = await NativeConnection.connect({ address: options.address });
  const metrics = new WorkerMetrics();
  const common = { connection, namespace, interceptors: { activity: [metrics.interceptor()] } };
  const shared = await Worker.create({
    ...common,
    taskQueue: options.sharedQueue ?? SHARED_TASK_QUEUE,
    workflowBundle,
    activities: createControlActivities({ ...options, hostQueue }),
  });
  // rollout deployments answer only their access token (this process's rollouts hold it)
  const deployments = new DeploymentRegistry(undefined, { auth: {} });
  const tracer = await RolloutTracer.start(options.advertiseHost, options.artifacts, {
    outbound: options.outbound ?? outboundSettingsFromEnv(),
  });
  const host = await Worker.create({
    ...common,
    taskQueue: hostQueue,
    activities: createHostActivities({
      ...options,
      checkpointUrl: options.checkpoints.url,
      hostQueue,
      deployments,
      tracer,
    }),
  });
  const done = Promise.all([shared.run(), host.run()]).then(() => undefined);
  let stopping: Promise<void> | undefined;
  return {
    hostQueue,
    metrics,
    done,
    stop() {
      stopping ??= (async () => {
        for (const w of [shared, host]) if (w.getState() === 'RUNNING') w.shutdown();
        await done.catch(() => undefined);
        await deployments.close();
        await tracer.close();
        await connection.close();
      })();
      return stopping;
    },
  };
}

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
  NativeConnection,
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
import { hostTaskQueue, SHARED_TASK_QUEUE } from './types.js';

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
  /** Stops polling, lets running activities finish their current call, closes the connection. */
  stop(): Promise<void>;
  /** Settles when both workers have stopped (rejects if one failed). */
  readonly done: Promise<void>;
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
  const hostQueue = hostTaskQueue(options.hostId);
  const namespace = options.namespace ?? 'default';
  const workflowBundle = options.workflowBundle ?? (await bundleWorkflows());
  const connection = await NativeConnection.connect({ address: options.address });
  const common = { connection, namespace };
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

/**
 * A worker host from settings: opens the store and object stores, a local pod launcher and
 * the Temporal worker. What `temper worker` runs, and what `temper up` embeds.
 *
 * Closing the host stops the trainer pods it launched (they run detached, so nothing else
 * would): a host going away takes its pods with it, and the workflows move the jobs to
 * another host from their last checkpoint. A host killed outright leaves them to their
 * inactivity timeout.
 */
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { openObjectStore } from '../../checkpoints/object-store/index.js';
import { sandboxSettingsFromEnv } from '../../evaluators/index.js';
import { serveMetrics } from '../../metrics/index.js';
import { openStore } from '../../store/index.js';
import {
  type Launcher,
  LocalProcessLauncher,
  type TrainerLaunchSpec,
} from '../../trainer/launcher/index.js';
import { startTemperWorker, type TemperWorker } from '../../workflows/index.js';
import { loadSecretsKey } from './secrets-key.js';
import { defaultHostId, type PlatformSettings } from './settings.js';

export { defaultHostId };

export interface WorkerHostOptions {
  /** Default: the machine's host name, made a valid id. */
  hostId?: string;
  threads?: number;
  /** A workflow bundle made beforehand (`temper up` bundles while the dev server starts). */
  workflowBundle?: WorkflowBundleWithSourceMap;
  /** Where to serve the host's GET /metrics (port 0: any free one); absent: not served. */
  metrics?: { host: string; port: number };
}

export interface WorkerHost extends TemperWorker {
  /** host:port of its /metrics, when served. */
  metricsAddress?: string;
  /** Stops the worker, then the pods this host launched, then closes the store. */
  close(): Promise<void>;
}

/** A launcher that remembers the pods it started, so the host can stop exactly those. */
class TrackingLauncher implements Launcher {
  readonly launched = new Set<string>();
  constructor(private readonly inner: Launcher) {}
  get kind() {
    return this.inner.kind;
  }
  get checkpointUrl() {
    return this.inner.checkpointUrl;
  }
  async launch(spec: TrainerLaunchSpec) {
    // Known before the launch where the caller names it, so a pod that is still starting
    // when the host closes is stopped too.
    if (spec.jobId) this.launched.add(spec.jobId);
    const endpoint = await this.inner.launch(spec);
    this.launched.add(endpoint.jobId);
    return endpoint;
  }
  attach(jobId: string) {
    return this.inner.attach(jobId);
  }
  stop(...args: Parameters<Launcher['stop']>) {
    return this.inner.stop(...args);
  }
  get(jobId: string) {
    return this.inner.get(jobId);
  }
  list() {
    return this.inner.list();
  }
  async stopLaunched(): Promise<void> {
    await Promise.all(
      [...this.launched].map((id) =>
        this.inner.stop(id, { graceMs: 5_000 }).catch(() => undefined),
      ),
    );
  }
}

export async function startWorkerHost(
  settings: PlatformSettings,
  options: WorkerHostOptions = {},
): Promise<WorkerHost> {
  // Evaluators read the account's secrets: the worker opens them with the same key.
  const secretsKey = await loadSecretsKey(settings, { create: false });
  const store = openStore(settings.storeUrl, secretsKey ? { secretsKey } : {});
  await store.migrate();
  const [artifacts, checkpoints] = await Promise.all([
    openObjectStore(settings.artifactsUrl),
    openObjectStore(settings.checkpointsUrl),
  ]);
  const launcher = new TrackingLauncher(
    new LocalProcessLauncher({
      stateDir: settings.trainersDir,
      checkpointUrl: checkpoints.url,
      diesWithParent: true,
    }),
  );
  const worker = await startTemperWorker({
    address: settings.temporalAddress,
    namespace: settings.temporalNamespace,
    hostId: options.hostId ?? defaultHostId(),
    store,
    artifacts,
    checkpoints,
    launcher,
    sharedQueue: settings.taskQueue,
    advertiseHost: settings.rolloutTracerHost,
    // Operator limits of evaluator sandboxes: TEMPER_EVALUATOR_* (src/evaluators/settings.ts).
    evaluatorSandbox: sandboxSettingsFromEnv(),
    ...(options.threads ? { threads: options.threads } : {}),
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : {}),
  });
  const metricsServer = options.metrics
    ? await serveMetrics(worker.metrics.server, options.metrics)
    : undefined;
  return {
    hostQueue: worker.hostQueue,
    metrics: worker.metrics,
    ...(metricsServer ? { metricsAddress: metricsServer.address } : {}),
    done: worker.done,
    stop: () => worker.stop(),
    async close() {
      await metricsServer?.close();
      await worker.stop();
      await launcher.stopLaunched();
      await store.close();
    },
  };
}

/**
 * A worker host from settings: opens the store and object stores, a local pod launcher and
 * the Temporal worker. What `temper worker` runs, and what `temper up` embeds.
 */
import { hostname } from 'node:os';
import { openObjectStore } from '../../checkpoints/object-store/index.js';
import { openStore } from '../../control-plane/store/index.js';
import { LocalProcessLauncher } from '../../trainer/launcher/index.js';
import { startTemperWorker, type TemperWorker } from '../../workflows/worker.js';
import type { PlatformSettings } from './settings.js';

export interface WorkerHostOptions {
  /** Default: the machine's host name, made a valid id. */
  hostId?: string;
  threads?: number;
}

export function defaultHostId(): string {
  return (
    hostname()
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'host'
  );
}

export async function startWorkerHost(
  settings: PlatformSettings,
  options: WorkerHostOptions = {},
): Promise<TemperWorker & { close(): Promise<void> }> {
  const store = await openStore(settings.storeUrl);
  await store.migrate();
  const [artifacts, checkpoints] = await Promise.all([
    openObjectStore(settings.artifactsUrl),
    openObjectStore(settings.checkpointsUrl),
  ]);
  const launcher = new LocalProcessLauncher({
    stateDir: settings.trainersDir,
    checkpointUrl: checkpoints.url,
  });
  const worker = await startTemperWorker({
    address: settings.temporalAddress,
    namespace: settings.temporalNamespace,
    hostId: options.hostId ?? defaultHostId(),
    store,
    artifacts,
    checkpoints,
    launcher,
    sharedQueue: settings.taskQueue,
    ...(options.threads ? { threads: options.threads } : {}),
  });
  return {
    hostQueue: worker.hostQueue,
    done: worker.done,
    stop: () => worker.stop(),
    async close() {
      await worker.stop();
      await store.close();
    },
  };
}

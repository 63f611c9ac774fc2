/**
 * A real platform for end-to-end tests: a Temporal dev server, a SQLite store, file object
 * stores for artifacts and checkpoints, local trainer pods, one or more `temper worker`s and
 * the Temporal orchestrator — every part the real one, in a temporary directory.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { type ObjectStore, openObjectStore } from '../../src/checkpoints/object-store/index.js';
import { openStore } from '../../src/control-plane/store/index.js';
import type { Store } from '../../src/control-plane/store/types.js';
import { startDevServer, type TemporalDevServer } from '../../src/orchestration/dev-server.js';
import { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import { TemporalOrchestrator } from '../../src/workflows/orchestrator.js';
import {
  bundleWorkflows,
  startTemperWorker,
  type TemperWorker,
} from '../../src/workflows/worker.js';

export interface TestPlatform {
  dir: string;
  server: TemporalDevServer;
  client: Client;
  store: Store;
  artifacts: ObjectStore;
  checkpoints: ObjectStore;
  launcher: LocalProcessLauncher;
  orchestrator: TemporalOrchestrator;
  sharedQueue: string;
  workers: TemperWorker[];
  /** Starts another worker host (its own host queue, same shared queue). */
  addWorker(hostId: string): Promise<TemperWorker>;
  close(): Promise<void>;
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

export async function startTestPlatform(
  options: {
    workers?: number /** Temporal binds here (0.0.0.0 for network-namespace hosts). */;
    temporalIp?: string;
  } = {},
): Promise<TestPlatform> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  bundle ??= bundleWorkflows();
  const dir = await mkdtemp(join(tmpdir(), 'temper-platform-'));
  const [server, workflowBundle] = await Promise.all([
    startDevServer(options.temporalIp ? { ip: options.temporalIp } : {}),
    bundle,
  ]);
  const store = await openStore(`sqlite://${join(dir, 'temper.db')}`);
  await store.migrate();
  const artifacts = await openObjectStore(pathToFileURL(join(dir, 'artifacts')).href);
  const checkpoints = await openObjectStore(pathToFileURL(join(dir, 'checkpoints')).href);
  const launcher = new LocalProcessLauncher({
    stateDir: join(dir, 'trainers'),
    checkpointUrl: checkpoints.url,
  });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: server.namespace });
  const sharedQueue = `temper-jobs-${randomUUID()}`;
  const workers: TemperWorker[] = [];
  const addWorker = async (hostId: string) => {
    const worker = await startTemperWorker({
      address: server.address,
      namespace: server.namespace,
      hostId: `${hostId}-${randomUUID().slice(0, 8)}`,
      store,
      artifacts,
      checkpoints,
      launcher,
      threads: 1,
      workflowBundle,
      sharedQueue,
    });
    workers.push(worker);
    return worker;
  };
  for (let i = 0; i < (options.workers ?? 1); i++) await addWorker(`host${i}`);
  return {
    dir,
    server,
    client,
    store,
    artifacts,
    checkpoints,
    launcher,
    orchestrator: new TemporalOrchestrator(client, sharedQueue),
    sharedQueue,
    workers,
    addWorker,
    async close() {
      await Promise.all(workers.map((w) => w.stop()));
      for (const pod of await launcher.list())
        await launcher.stop(pod.jobId).catch(() => undefined);
      await connection.close();
      await store.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

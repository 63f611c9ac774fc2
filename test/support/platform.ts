/**
 * A real platform for end-to-end tests: a Temporal dev server, a SQLite store, file object
 * stores for artifacts and checkpoints, local trainer pods, one or more `temper worker`s and
 * the Temporal orchestrator — every part the real one, in a temporary directory.
 */

import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { type ObjectStore, openObjectStore } from '../../src/checkpoints/object-store/index.js';
import type { JobRef } from '../../src/control-plane/orchestrator.js';
import type { SandboxSettings } from '../../src/evaluators/index.js';
import { startDevServer, type TemporalDevServer } from '../../src/orchestration/dev-server.js';
import type { Store } from '../../src/store/index.js';
import { openStore, SecretsKey } from '../../src/store/index.js';
import { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import type { OutboundSettings } from '../../src/util/outbound.js';
import { TemporalOrchestrator } from '../../src/workflows/orchestrator.js';
import {
  bundleWorkflows,
  installTemporalRuntime,
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
  /** A job's stored body. */
  jobBody(ref: JobRef): Promise<Record<string, unknown>>;
  /** The weight files of a promoted model, concatenated (for bitwise comparisons). */
  modelWeights(account: string, id: string): Promise<Buffer>;
  /**
   * What a failing test prints: each pod's state and why it ended, with the end of the log of
   * pods that were not stopped (`expectedDeaths`: pids the test killed itself).
   */
  podReport(expectedDeaths?: ReadonlySet<number>): Promise<string>;
  close(): Promise<void>;
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/**
 * Polls `probe` until it returns a value (every 100 ms); fails naming `what` after the
 * timeout, with what `explain` says of the state things were left in.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 120_000,
  explain?: () => Promise<string>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${explain ? `\n${await explain()}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startTestPlatform(
  options: {
    workers?: number /** Temporal binds here (0.0.0.0 for network-namespace hosts). */;
    temporalIp?: string;
    /** The workers' evaluator sandbox (e.g. pip reading a local wheelhouse). */
    evaluatorSandbox?: SandboxSettings;
    /** Whether workers may call user URLs on private networks (remote environments on loopback). */
    outbound?: OutboundSettings;
    /** false: a store without a secrets key (a multi-machine part started without one). */
    secretsKey?: false;
  } = {},
): Promise<TestPlatform> {
  // TEMPER_TEST_TEMPORAL_LOG=WARN shows the warnings a test provokes (killed pods and the like).
  installTemporalRuntime(process.env.TEMPER_TEST_TEMPORAL_LOG === 'WARN' ? 'WARN' : 'ERROR');
  bundle ??= bundleWorkflows();
  const dir = await mkdtemp(join(tmpdir(), 'temper-platform-'));
  const [server, workflowBundle] = await Promise.all([
    startDevServer(options.temporalIp ? { ip: options.temporalIp } : {}),
    bundle,
  ]);
  // Secrets are sealed at rest with an operator key, as on a real stack.
  const store = openStore(
    `sqlite://${join(dir, 'temper.db')}`,
    options.secretsKey === false ? {} : { secretsKey: SecretsKey.generate().key },
  );
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
      ...(options.evaluatorSandbox ? { evaluatorSandbox: options.evaluatorSandbox } : {}),
      ...(options.outbound ? { outbound: options.outbound } : {}),
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
    async jobBody(ref) {
      const row = await store.get<Record<string, unknown>>(ref.collection, ref.account, ref.id);
      if (!row) throw new Error(`no job ${ref.id}`);
      return row.body;
    },
    async modelWeights(account, id) {
      const files = await checkpoints.list(`accounts/${account}/models/${id}/`);
      const weights = files.filter((f) => f.key.endsWith('.safetensors'));
      if (weights.length === 0) throw new Error(`model ${id} has no weight files`);
      return Buffer.concat(await Promise.all(weights.map((f) => checkpoints.get(f.key))));
    },
    async podReport(expectedDeaths = new Set()) {
      const lines: string[] = [];
      for (const pod of await launcher.list()) {
        lines.push(
          `pod ${pod.jobId} (pid ${pod.pid}): ${pod.state}${pod.reason ? `, ${pod.reason}` : ''}`,
        );
        if (pod.state !== 'failed' || expectedDeaths.has(pod.pid ?? -1)) continue;
        const log = pod.logPath ? await readFile(pod.logPath, 'utf8').catch(() => '') : '';
        lines.push(
          ...log
            .trimEnd()
            .split('\n')
            .slice(-15)
            .map((l) => `  | ${l}`),
        );
      }
      return lines.join('\n');
    },
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

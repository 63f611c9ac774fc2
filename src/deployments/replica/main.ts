// Replica process entry: `node --import tsx src/deployments/replica/main.ts` with a JSON
// config in TEMPER_REPLICA_CONFIG; prints {"ready":true,"port":N} on stdout once serving.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { storeSnapshot } from '../../checkpoints/deltas/snapshot.js';
import { openObjectStore } from '../../checkpoints/object-store/index.js';
import { parseHfConfig } from '../../engine/config.js';
import { restrictFileModes } from '../../util/private-files.js';
import { deploymentLogger } from '../log.js';
import { ReplicaRuntime } from './runtime.js';
import { serverPort, startReplicaServer } from './server.js';
import { replicaSettings } from './settings.js';
import { parseJsonObject } from './snapshots.js';

export const replicaConfigSchema = z.object({
  replicaId: z.string(),
  baseModelDir: z.string(),
  bucketUrl: z.string(),
  transition: z.enum(['ASYNC', 'SYNC']).default('ASYNC'),
  port: z.number().int().nonnegative().default(0),
  threads: replicaSettings.threads.default(1),
  maxConcurrent: replicaSettings.maxConcurrent.default(8),
  stepDelayMs: z.number().nonnegative().default(0),
  swapDelayMs: z.number().nonnegative().default(0),
  weightsAs: z.enum(['initializers', 'inputs']).default('initializers'),
  maxDecodeBatch: replicaSettings.maxDecodeBatch.default(1),
});
export type ReplicaConfig = z.input<typeof replicaConfigSchema>;

async function main(): Promise<void> {
  // Whatever a replica writes (logs, scratch) is its owner's only, as in every temper process.
  restrictFileModes();
  const cfg = replicaConfigSchema.parse(JSON.parse(process.env.TEMPER_REPLICA_CONFIG ?? '{}'));
  const files = new Map<string, Buffer>();
  for (const f of await readdir(cfg.baseModelDir))
    if (f === 'config.json' || f.endsWith('.safetensors'))
      files.set(f, await readFile(join(cfg.baseModelDir, f)));
  const baseConfig = parseJsonObject(
    files.get('config.json') ?? Buffer.from('null'),
    'base config.json',
  );
  const store = await openObjectStore(cfg.bucketUrl);
  const rt = await ReplicaRuntime.start({
    replicaId: cfg.replicaId,
    config: parseHfConfig(baseConfig),
    baseConfig,
    baseWeights: { identity: '', files },
    openSnapshot: (identity) => storeSnapshot(store, identity),
    transition: cfg.transition,
    threads: cfg.threads,
    maxConcurrent: cfg.maxConcurrent,
    stepDelayMs: cfg.stepDelayMs,
    swapDelayMs: cfg.swapDelayMs,
    weightsAs: cfg.weightsAs,
    maxDecodeBatch: cfg.maxDecodeBatch,
    logger: deploymentLogger(`temper-replica:${cfg.replicaId}`),
  });
  const server = await startReplicaServer(
    rt,
    cfg.port,
    '127.0.0.1',
    process.env.TEMPER_REPLICA_TOKEN,
  );
  process.stdout.write(`${JSON.stringify({ ready: true, port: serverPort(server) })}\n`);
  // server.close() alone waits for every request in flight (a long generation, a client that
  // stalls mid-body: up to Node's 5-minute requestTimeout), which left replicas ignoring
  // SIGTERM for minutes: cut every connection, and leave after 1 s whatever still runs.
  const stop = () => {
    setTimeout(() => process.exit(0), 1_000).unref();
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`replica failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});

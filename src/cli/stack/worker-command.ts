/** `temper worker`: this machine's worker host, until SIGINT/SIGTERM. */
import type { Command } from 'commander';
import { portNumber, positiveInt } from '../option-parsers.js';
import { defaultHostId, platformSettings } from './settings.js';

export function addWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description(
      'run this machine as a worker host: managed-job workflows plus the trainer pods it launches',
    )
    .option(
      '--host-id <id>',
      "this host's id (its task queue is temper-host-<id>)",
      defaultHostId(),
    )
    .option('--threads <n>', 'engine threads per trainer pod', positiveInt)
    .option(
      '--metrics-port <n>',
      "serve the host's Prometheus metrics (activities by type and outcome) at GET /metrics on this port (0: any free port)",
      portNumber,
    )
    .option('--metrics-host <ip>', 'address the metrics port binds to', '127.0.0.1')
    .option('--data-dir <dir>', 'platform data directory (default $TEMPER_HOME or ~/.temper)')
    .option('--temporal-address <host:port>', 'Temporal frontend (default 127.0.0.1:7233)')
    .option('--store-url <url>', 'sqlite:///path.db or postgres://...')
    .option(
      '--secrets-key-file <path>',
      'key that opens secrets for evaluators (default $TEMPER_SECRETS_KEY_FILE or <data dir>/secrets.key; $TEMPER_SECRETS_KEY holds the key itself)',
    )
    .action(
      async (opts: {
        hostId: string;
        threads?: number;
        metricsPort?: number;
        metricsHost: string;
        dataDir?: string;
        temporalAddress?: string;
        storeUrl?: string;
        secretsKeyFile?: string;
      }) => {
        const settings = platformSettings({
          ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
          ...(opts.temporalAddress ? { temporalAddress: opts.temporalAddress } : {}),
          ...(opts.storeUrl ? { storeUrl: opts.storeUrl } : {}),
          ...(opts.secretsKeyFile ? { secretsKeyFile: opts.secretsKeyFile } : {}),
        });
        // Loaded on use: the worker pulls in Temporal and the store, which other verbs skip.
        const { startWorkerHost } = await import('./worker-host.js');
        const worker = await startWorkerHost(settings, {
          hostId: opts.hostId,
          ...(opts.threads ? { threads: opts.threads } : {}),
          ...(opts.metricsPort !== undefined
            ? { metrics: { host: opts.metricsHost, port: opts.metricsPort } }
            : {}),
        });
        const started = {
          event: 'worker_started',
          hostQueue: worker.hostQueue,
          pid: process.pid,
          ...(worker.metricsAddress ? { metricsAddress: worker.metricsAddress } : {}),
        };
        process.stdout.write(`${JSON.stringify(started)}\n`);
        const stop = () => void worker.close().then(() => process.exit(0));
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        await worker.done;
      },
    );
}

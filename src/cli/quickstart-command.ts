/** `temper quickstart` (the README's main command); the work is in quickstart.ts. */
import type { Command } from 'commander';
import { integer, number } from './commands/common.js';

export function addQuickstartCommand(program: Command): void {
  program
    .command('quickstart')
    .description(
      'bring the platform up, upload the bundled dataset, fine-tune the bundled model with an SFT job, deploy it and sample before/after, then stop',
    )
    .option('--data-dir <dir>', 'keep the platform data here (default: a temporary directory)')
    .option('--epochs <n>', 'epochs of the SFT job', number)
    .option('--batch-size <tokens>', 'tokens per optimizer step', integer)
    .option('--learning-rate <lr>', 'learning rate', number)
    .option('--threads <n>', 'engine threads per trainer pod and replica', integer)
    .action(
      async (flags: {
        dataDir?: string;
        epochs?: number;
        batchSize?: number;
        learningRate?: number;
        threads?: number;
      }) => {
        // Loaded on use: the stack pulls in Temporal, Fastify and the deployments.
        const { QUICKSTART_DEFAULTS, runQuickstart } = await import('./quickstart.js');
        const defined = Object.fromEntries(
          Object.entries(flags).filter(([, v]) => v !== undefined),
        );
        await runQuickstart({ ...QUICKSTART_DEFAULTS, ...defined });
        // Sockets of the finished stack may linger a moment; the work is done.
        process.exit(0);
      },
    );
}

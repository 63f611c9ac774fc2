/**
 * `temper up`: the embedded stack in the foreground until SIGINT/SIGTERM; `temper down`:
 * signals the `temper up` of a data directory through its pid file (<dataDir>/temper-up.pid)
 * and waits for it to finish stopping.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { processAlive } from '../../util/processes.js';
import { portNumber, positiveInt } from '../option-parsers.js';
import { formatKeyValue, type OutputFormat, parseOutputFormat } from '../output.js';
import { type PlatformSettings, platformSettings } from './settings.js';

const pidFileSchema = z.object({ pid: z.number().int().positive(), apiUrl: z.string() });

export const pidFilePath = (dataDir: string) => join(dataDir, 'temper-up.pid');

/** The pid of a running `temper up` for this data directory, if any. */
export async function runningUp(dataDir: string): Promise<number | undefined> {
  const text = await readFile(pidFilePath(dataDir), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const parsed = pidFileSchema.safeParse(JSON.parse(text || 'null'));
  return parsed.success && processAlive(parsed.data.pid) ? parsed.data.pid : undefined;
}

interface UpFlags {
  dataDir?: string;
  apiPort?: number;
  temporalPort?: number;
  threads?: number;
  secretsKeyFile?: string;
  output: OutputFormat;
}

function upSettings(flags: UpFlags): PlatformSettings {
  const base = platformSettings({
    ...(flags.dataDir ? { dataDir: flags.dataDir } : {}),
    ...(flags.secretsKeyFile ? { secretsKeyFile: flags.secretsKeyFile } : {}),
  });
  const host = base.temporalAddress.slice(0, base.temporalAddress.lastIndexOf(':'));
  return {
    ...base,
    ...(flags.apiPort !== undefined ? { apiPort: flags.apiPort } : {}),
    ...(flags.temporalPort !== undefined
      ? { temporalAddress: `${host}:${flags.temporalPort}` }
      : {}),
  };
}

async function up(flags: UpFlags): Promise<void> {
  const settings = upSettings(flags);
  const other = await runningUp(settings.dataDir);
  if (other)
    throw new Error(
      `temper up is already running for ${settings.dataDir} (pid ${other}): stop it with \`temper down\``,
    );
  const { startStack } = await import('./up.js');
  const log = (line: string) => {
    if (flags.output === 'text') process.stderr.write(`temper up: ${line}\n`);
  };
  const stack = await startStack({
    settings,
    onStep: log,
    ...(flags.threads ? { threads: flags.threads } : {}),
  });
  const pidFile = pidFilePath(settings.dataDir);
  await writeFile(pidFile, JSON.stringify({ pid: process.pid, apiUrl: stack.apiUrl }));
  const where = {
    apiUrl: stack.apiUrl,
    account: stack.credentials.account,
    credentials: stack.credentialsPath,
    dataDir: settings.dataDir,
    secretsKey: process.env.TEMPER_SECRETS_KEY ? 'TEMPER_SECRETS_KEY' : settings.secretsKeyFile,
    store: settings.storeUrl,
    artifacts: settings.artifactsUrl,
    checkpoints: settings.checkpointsUrl,
    trainers: settings.trainersDir,
    temporal: `${stack.temporal.address} (namespace ${stack.temporal.namespace})`,
    temporalDb: stack.temporal.dbFilename,
    temporalPid: stack.temporal.pid,
    workerQueue: stack.hostQueue,
    log: stack.logFile,
    pid: process.pid,
  };
  if (flags.output === 'json')
    process.stdout.write(`${JSON.stringify({ event: 'stack_ready', ...where })}\n`);
  else
    process.stdout.write(
      `temper is up.\n${formatKeyValue(where)}Try \`temper list model --account temper\`; stop with Ctrl-C or \`temper down\`.\n`,
    );

  let stopping = false;
  const stop = (code: number) => {
    if (stopping) {
      process.stderr.write('temper up: forced exit\n');
      process.exit(1);
    }
    stopping = true;
    log('stopping (control plane, deployments, worker and pods, Temporal dev server)');
    void stack
      .close()
      .then(
        () => 0,
        (err: unknown) => {
          process.stderr.write(`temper up: error while stopping: ${(err as Error).message}\n`);
          return 1;
        },
      )
      .then(async (closeCode) => {
        await rm(pidFile, { force: true });
        log('stopped');
        process.exit(code || closeCode);
      });
  };
  process.once('SIGINT', () => stop(0));
  process.once('SIGTERM', () => stop(0));
  stack.done.catch((err: unknown) => {
    process.stderr.write(`temper up: the worker stopped: ${(err as Error).message}\n`);
    stop(1);
  });
  // Keep the action pending: the stack runs until a signal ends the process.
  await new Promise<never>(() => {});
}

async function down(flags: { dataDir?: string; timeout: number }): Promise<void> {
  const dataDir = platformSettings(flags.dataDir ? { dataDir: flags.dataDir } : {}).dataDir;
  const pid = await runningUp(dataDir);
  if (!pid) {
    process.stdout.write(`temper up is not running for ${dataDir}\n`);
    return;
  }
  process.kill(pid, 'SIGTERM');
  const until = Date.now() + flags.timeout * 1000;
  while (processAlive(pid)) {
    if (Date.now() > until)
      throw new Error(`temper up (pid ${pid}) is still stopping after ${flags.timeout} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  process.stdout.write(`temper up (pid ${pid}) stopped\n`);
}

export function addUpCommands(program: Command): void {
  program
    .command('up')
    .description(
      'run the whole platform on this machine (Temporal dev server, control plane on SQLite, worker, local pods) until Ctrl-C',
    )
    .option('--data-dir <dir>', 'where everything is kept (default $TEMPER_HOME or ~/.temper)')
    .option(
      '--api-port <port>',
      'control plane port (default $TEMPER_API_PORT or 8080)',
      portNumber,
    )
    .option('--temporal-port <port>', 'Temporal dev server port (default 7233)', portNumber)
    .option('--threads <n>', 'engine threads per trainer pod (default: all cores)', positiveInt)
    .option(
      '--secrets-key-file <path>',
      'key that seals secrets at rest (default $TEMPER_SECRETS_KEY_FILE or <data dir>/secrets.key, made when missing; $TEMPER_SECRETS_KEY holds the key itself)',
    )
    .option('-o, --output <format>', 'json: one stack_ready line; text', parseOutputFormat, 'text')
    .action((flags: UpFlags) => up(flags));

  program
    .command('down')
    .description('stop the `temper up` running for a data directory')
    .option('--data-dir <dir>', 'data directory (default $TEMPER_HOME or ~/.temper)')
    .option('--timeout <s>', 'seconds to wait for it to stop', positiveInt, 60)
    .action((flags: { dataDir?: string; timeout: number }) => down(flags));
}

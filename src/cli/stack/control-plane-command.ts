/**
 * The multi-machine shape's commands (docker/): `temper control-plane` runs the REST API on
 * its own against a Temporal cluster and a shared store (PostgreSQL); `temper account create`
 * makes an account and an API key directly in the store (the key is printed once) — what
 * `temper up` does by itself on one machine.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { formatKeyValue, type OutputFormat, parseOutputFormat } from '../output.js';
import { type PlatformSettings, platformSettings } from './settings.js';

interface StoreFlags {
  dataDir?: string;
  storeUrl?: string;
}

interface ControlPlaneFlags extends StoreFlags {
  host: string;
  apiPort?: number;
  temporalAddress?: string;
  logLevel: string;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('expected a port number');
  return n;
}

function settingsFrom(flags: StoreFlags & { apiPort?: number; temporalAddress?: string }) {
  const overrides: Partial<PlatformSettings> = {};
  if (flags.dataDir) overrides.dataDir = flags.dataDir;
  if (flags.storeUrl) overrides.storeUrl = flags.storeUrl;
  if (flags.apiPort !== undefined) overrides.apiPort = flags.apiPort;
  if (flags.temporalAddress) overrides.temporalAddress = flags.temporalAddress;
  return platformSettings(overrides);
}

async function controlPlane(flags: ControlPlaneFlags): Promise<void> {
  const settings = settingsFrom(flags);
  const [{ default: pino }, { startApiHost }] = await Promise.all([
    import('pino'),
    import('./api-host.js'),
  ]);
  const logger = pino({ level: flags.logLevel });
  const host = await startApiHost(settings, { host: flags.host, logger });
  logger.info(
    { apiUrl: host.apiUrl, store: settings.storeUrl.replace(/\/\/[^@/]*@/, '//***@') },
    'control plane started',
  );
  const stop = () =>
    void host.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

async function createAccount(id: string, flags: StoreFlags & { output: OutputFormat }) {
  const settings = settingsFrom(flags);
  const [{ openStore }, { bootstrapAccount }] = await Promise.all([
    import('../../control-plane/store/index.js'),
    import('../../control-plane/bootstrap.js'),
  ]);
  const store = openStore(settings.storeUrl);
  try {
    await store.migrate();
    const result = await bootstrapAccount(store, id, { keyName: 'temper-account-create' });
    if (flags.output === 'json') process.stdout.write(`${JSON.stringify(result)}\n`);
    else
      process.stdout.write(
        `${formatKeyValue({ ...result })}The key is shown only now: export TEMPER_API_KEY=<apiKey> TEMPER_ACCOUNT=${id}\n`,
      );
  } finally {
    await store.close();
  }
}

export function addControlPlaneCommands(program: Command): void {
  program
    .command('control-plane')
    .description('run the REST API alone (Temporal and the store elsewhere; see docker/)')
    .option('--host <host>', 'interface to bind', '0.0.0.0')
    .option('--api-port <port>', 'port (default $TEMPER_API_PORT or 8080)', port)
    .option('--data-dir <dir>', 'data directory (default $TEMPER_HOME or ~/.temper)')
    .option('--store-url <url>', 'sqlite:///path.db or postgres://... (default $TEMPER_STORE_URL)')
    .option(
      '--temporal-address <host:port>',
      'Temporal frontend (default $TEMPER_TEMPORAL_ADDRESS)',
    )
    .option('--log-level <level>', 'pino log level', 'info')
    .action((flags: ControlPlaneFlags) => controlPlane(flags));

  const account = program.command('account').description('accounts and their API keys (admin)');
  account
    .command('create')
    .argument('<id>', 'account id')
    .description('create an account (if new) and a new API key for it, straight in the store')
    .option('--data-dir <dir>', 'data directory (default $TEMPER_HOME or ~/.temper)')
    .option('--store-url <url>', 'sqlite:///path.db or postgres://... (default $TEMPER_STORE_URL)')
    .option('-o, --output <format>', 'json or text', parseOutputFormat, 'text')
    .action((id: string, flags: StoreFlags & { output: OutputFormat }) => createAccount(id, flags));
}

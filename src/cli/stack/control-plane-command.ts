/**
 * The multi-machine shape's commands (docker/): `temper control-plane` runs the REST API on
 * its own against a Temporal cluster and a shared store (PostgreSQL); `temper account create`
 * makes an account and an API key directly in the store (the key is printed once) — what
 * `temper up` does by itself on one machine.
 */
import type { Command } from 'commander';
import { portNumber } from '../option-parsers.js';
import { formatKeyValue, type OutputFormat, parseOutputFormat } from '../output.js';
import { type PlatformSettings, platformSettings } from './settings.js';

interface StoreFlags {
  dataDir?: string;
  storeUrl?: string;
  secretsKeyFile?: string;
}

interface ControlPlaneFlags extends StoreFlags {
  host: string;
  apiPort?: number;
  temporalAddress?: string;
  logLevel: string;
}

function settingsFrom(flags: StoreFlags & { apiPort?: number; temporalAddress?: string }) {
  const overrides: Partial<PlatformSettings> = {};
  if (flags.dataDir) overrides.dataDir = flags.dataDir;
  if (flags.storeUrl) overrides.storeUrl = flags.storeUrl;
  if (flags.secretsKeyFile) overrides.secretsKeyFile = flags.secretsKeyFile;
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

interface RotateFlags extends StoreFlags {
  newKeyFile?: string;
  output: OutputFormat;
}

const SECRETS_KEY_HELP =
  'key that seals secrets at rest (default $TEMPER_SECRETS_KEY_FILE or <data dir>/secrets.key; $TEMPER_SECRETS_KEY holds the key itself)';

/**
 * Key rotation. The new key is written to its file first, then every secret's data key is
 * re-wrapped in one transaction (all or none), and only then, when the current key came from
 * a file and no new key file was named, is the new file moved over the old one. A stop between
 * the commit and the move leaves the new key in `<key file>.new`, which the start-up error
 * then points at.
 */
async function rotateSecretsKey(flags: RotateFlags) {
  const settings = settingsFrom(flags);
  const [{ openStore, SecretsKey }, { loadSecretsKey, SECRETS_KEY_ENV }, fs] = await Promise.all([
    import('../../store/index.js'),
    import('./secrets-key.js'),
    import('node:fs/promises'),
  ]);
  const current = await loadSecretsKey(settings, { create: false });
  if (!current)
    throw new Error(
      `no secrets key at ${settings.secretsKeyFile} and ${SECRETS_KEY_ENV} is not set: nothing to rotate from`,
    );
  const fromEnv = Boolean(process.env[SECRETS_KEY_ENV]);
  const newPath = flags.newKeyFile ?? `${settings.secretsKeyFile}.new`;
  const exists = await fs.stat(newPath).then(
    () => true,
    () => false,
  );
  const next = exists ? await SecretsKey.fromFile(newPath) : await SecretsKey.createFile(newPath);
  if (next.id === current.id)
    throw new Error(`${newPath} holds the current key: nothing to rotate`);
  const store = openStore(settings.storeUrl, { secretsKey: current });
  let count: number;
  try {
    await store.migrate();
    count = await store.rewrapSecrets(next);
  } finally {
    await store.close();
  }
  const moved = !fromEnv && flags.newKeyFile === undefined;
  if (moved) await fs.rename(newPath, settings.secretsKeyFile);
  const keyFile = moved ? settings.secretsKeyFile : newPath;
  const result = { secrets: count, oldKeyId: current.id, newKeyId: next.id, keyFile };
  if (flags.output === 'json')
    process.stdout.write(`${JSON.stringify(result)}
`);
  else
    process.stdout.write(
      `${formatKeyValue(result)}${moved ? 'The new key is in place; restart temper to use it.' : `Start temper with the new key (--secrets-key-file ${newPath}${fromEnv ? `, or ${SECRETS_KEY_ENV} set to its content` : ''}).`}
`,
    );
}

async function createAccount(id: string, flags: StoreFlags & { output: OutputFormat }) {
  const settings = settingsFrom(flags);
  const [{ openStore }, { bootstrapAccount }] = await Promise.all([
    import('../../store/index.js'),
    import('../../control-plane/bootstrap.js'),
  ]);
  const { loadSecretsKey } = await import('./secrets-key.js');
  const secretsKey = await loadSecretsKey(settings, { create: false });
  const store = openStore(settings.storeUrl, secretsKey ? { secretsKey } : {});
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
    .option('--api-port <port>', 'port (default $TEMPER_API_PORT or 8080)', portNumber)
    .option('--data-dir <dir>', 'data directory (default $TEMPER_HOME or ~/.temper)')
    .option('--store-url <url>', 'sqlite:///path.db or postgres://... (default $TEMPER_STORE_URL)')
    .option('--secrets-key-file <path>', SECRETS_KEY_HELP)
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
    .option('--secrets-key-file <path>', SECRETS_KEY_HELP)
    .option('-o, --output <format>', 'json or text', parseOutputFormat, 'text')
    .action((id: string, flags: StoreFlags & { output: OutputFormat }) => createAccount(id, flags));

  program
    .command('secrets-key')
    .description('the key that seals secrets at rest')
    .command('rotate')
    .description(
      're-wrap every secret with a new key (the current one must open them), then put the new key in place',
    )
    .option('--data-dir <dir>', 'data directory (default $TEMPER_HOME or ~/.temper)')
    .option('--store-url <url>', 'sqlite:///path.db or postgres://... (default $TEMPER_STORE_URL)')
    .option('--secrets-key-file <path>', `the current key: ${SECRETS_KEY_HELP}`)
    .option(
      '--new-key-file <path>',
      'the new key (made 0600 when missing; default: <current key file>.new, moved over the current key file once every secret is re-wrapped)',
    )
    .option('-o, --output <format>', 'json or text', parseOutputFormat, 'text')
    .action((flags: RotateFlags) => rotateSecretsKey(flags));
}

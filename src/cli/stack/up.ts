/**
 * The embedded stack of `temper up`: every part of the platform on one machine, in one
 * process tree, with its data under one directory:
 *
 *   Temporal dev server   child process, SQLite history at <dataDir>/temporal/temporal.db
 *   control plane         REST API on SQLite (<dataDir>/temper.db), deployments in-process
 *   worker host           the workflows plus the trainer pods it launches (local processes)
 *   stores                <dataDir>/artifacts, <dataDir>/checkpoints, <dataDir>/trainers
 *
 * On first start it makes the account `default` and an API key (the store keeps its hash)
 * and writes the plain key with the API URL and account to <dataDir>/credentials.json
 * (mode 0600), which the CLI reads by default. Secrets are sealed with the key in
 * <dataDir>/secrets.key (made 0600 on first start) or TEMPER_SECRETS_KEY; a store holding
 * secrets that key cannot open stops the start with a clear message. close() stops everything
 * in the reverse order.
 */
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { bootstrapAccount } from '../../control-plane/index.js';
import { startDevServer, type TemporalDevServer } from '../../orchestration/dev-server.js';
import { openStore, type Store, StoreError } from '../../store/index.js';
import { bundleWorkflows, installTemporalRuntime } from '../../workflows/index.js';
import { type Credentials, readCredentials, writeCredentials } from '../api/connection.js';
import { closeAll, startApiHost } from './api-host.js';
import { loadSecretsKey, SECRETS_KEY_ENV } from './secrets-key.js';
import { credentialsPath, type PlatformSettings } from './settings.js';
import { defaultHostId, startWorkerHost, type WorkerHost } from './worker-host.js';

export interface StackOptions {
  settings: PlatformSettings;
  /** Interface the API binds (default 127.0.0.1). */
  apiHost?: string;
  /** Engine threads per trainer pod (default: all cores). */
  threads?: number;
  /** The account bootstrapped with a key (default `default`). */
  account?: string;
  /** Progress lines while starting ("Temporal dev server ready", ...). */
  onStep?: (line: string) => void;
}

export interface Stack {
  settings: PlatformSettings;
  apiUrl: string;
  credentials: Credentials;
  credentialsPath: string;
  temporal: { address: string; namespace: string; dbFilename: string; pid: number };
  hostQueue: string;
  logFile: string;
  /** Settles when the embedded worker stops (rejects if it failed). */
  done: Promise<void>;
  /** Stops the control plane, deployments, worker and its pods, and the dev server. */
  close(): Promise<void>;
}

/** `host:port` → its parts; port 0 means "any free port". */
function splitAddress(address: string): { ip: string; port: number } {
  const colon = address.lastIndexOf(':');
  const port = Number(address.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`Temporal address '${address}' is not host:port`);
  return { ip: address.slice(0, colon), port };
}

/** The credentials file's key if the store still knows it, else a new key for `account`. */
async function ensureCredentials(
  store: Store,
  path: string,
  account: string,
  apiUrl: string,
): Promise<Credentials> {
  const existing = await readCredentials(path).catch(() => undefined);
  if (existing?.account === account && (await store.resolveApiKey(existing.apiKey))) {
    const current = { ...existing, apiUrl };
    if (existing.apiUrl !== apiUrl) await writeCredentials(path, current);
    return current;
  }
  const boot = await bootstrapAccount(store, account, { keyName: 'temper-up' });
  const fresh: Credentials = {
    apiUrl,
    apiKey: boot.apiKey,
    account,
    keyId: boot.keyId,
    createdAt: new Date().toISOString(),
  };
  await writeCredentials(path, fresh);
  return fresh;
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  const { settings } = opts;
  const step = opts.onStep ?? (() => {});
  const dataDir = settings.dataDir;
  // The data directory is its owner's only (the process umask makes what is created in it
  // private too; an older data directory made before that is tightened here).
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  await mkdir(join(dataDir, 'temporal'), { recursive: true });
  await mkdir(join(dataDir, 'logs'), { recursive: true });
  await checkSecrets(settings);
  installTemporalRuntime();
  const closers: (() => Promise<unknown>)[] = [];
  try {
    return await assemble(opts, closers, step);
  } catch (err) {
    await closeAll(closers).catch(() => undefined);
    throw err;
  }
}

/**
 * Makes the secrets key file when there is none, and refuses to go on (before anything
 * starts) when the store holds secrets that key cannot open.
 */
async function checkSecrets(settings: PlatformSettings): Promise<void> {
  const secretsKey = await loadSecretsKey(settings, { create: true });
  const store = openStore(settings.storeUrl, secretsKey ? { secretsKey } : {});
  try {
    await store.migrate();
  } catch (err) {
    if (err instanceof StoreError && err.code === 'failed_precondition')
      throw new Error(
        `temper up refuses to start: ${err.message}. The key in use is ${process.env[SECRETS_KEY_ENV] ? SECRETS_KEY_ENV : settings.secretsKeyFile}.`,
      );
    throw err;
  } finally {
    await store.close();
  }
}

async function assemble(
  opts: StackOptions,
  closers: (() => Promise<unknown>)[],
  step: (line: string) => void,
): Promise<Stack> {
  const { settings } = opts;
  const dataDir = settings.dataDir;
  const { ip, port } = splitAddress(settings.temporalAddress);
  // Bundling the workflow code (webpack) and starting the dev server overlap.
  const bundle = bundleWorkflows();
  bundle.catch(() => undefined);
  const server: TemporalDevServer = await startDevServer({
    ip,
    ...(port ? { port } : {}),
    namespace: settings.temporalNamespace,
    dbFilename: join(dataDir, 'temporal', 'temporal.db'),
  });
  closers.push(() => server.stop());
  step(`Temporal dev server ready at ${server.address}`);
  const live: PlatformSettings = { ...settings, temporalAddress: server.address };

  const worker: WorkerHost = await startWorkerHost(live, {
    hostId: defaultHostId(),
    workflowBundle: await bundle,
    ...(opts.threads ? { threads: opts.threads } : {}),
  });
  closers.push(() => worker.close());
  step(`worker host polling ${worker.hostQueue}`);

  const logFile = join(dataDir, 'logs', 'control-plane.log');
  const logger = pino({ level: 'info' }, pino.destination({ dest: logFile, sync: false }));
  const api = await startApiHost(live, { host: opts.apiHost ?? '127.0.0.1', logger });
  closers.push(() => api.close());
  const { apiUrl, store } = api;
  step(`control plane listening at ${apiUrl}`);

  const credsPath = credentialsPath(dataDir);
  const credentials = await ensureCredentials(store, credsPath, opts.account ?? 'default', apiUrl);
  let closing: Promise<void> | undefined;
  return {
    settings: live,
    apiUrl,
    credentials,
    credentialsPath: credsPath,
    temporal: {
      address: server.address,
      namespace: server.namespace,
      dbFilename: server.dbFilename,
      pid: server.pid,
    },
    hostQueue: worker.hostQueue,
    logFile,
    done: worker.done,
    close() {
      closing ??= closeAll(closers);
      return closing;
    },
  };
}

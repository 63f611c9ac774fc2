/**
 * Where the platform's parts are, for `temper up`, `temper worker` and the CLI: one data
 * directory (TEMPER_HOME, default ~/.temper) holding the SQLite store, the artifacts and
 * checkpoint stores, trainer pod state and the Temporal dev server's database; every part can
 * be pointed elsewhere (PostgreSQL, s3://, a Temporal cluster) by a flag or environment
 * variable, which is the multi-machine shape.
 */
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { SHARED_TASK_QUEUE } from '../../workflows/index.js';

export const settingsSchema = z.strictObject({
  dataDir: z.string().min(1),
  /** sqlite:///abs/path.db or postgres://... */
  storeUrl: z.string().min(1),
  artifactsUrl: z.string().min(1),
  checkpointsUrl: z.string().min(1),
  /** host:port of the Temporal frontend. */
  temporalAddress: z.string().min(1),
  temporalNamespace: z.string().min(1),
  /** Shared task queue of workflows and control activities (one per platform). */
  taskQueue: z.string().min(1),
  /** Where local trainer pods keep their job folders. */
  trainersDir: z.string().min(1),
  /** Control plane port (`temper up`). */
  apiPort: z.number().int().min(0).max(65535),
  /**
   * The address this host's RFT rollout tracer binds and hands to remote environments as
   * `model_base_url` (127.0.0.1; a routable address when the user's server runs elsewhere).
   */
  rolloutTracerHost: z.string().min(1),
  /**
   * The operator's key that seals secrets at rest (32 random bytes, base64): a file
   * (`<dataDir>/secrets.key` by default, which `temper up` creates 0600 when missing). The
   * TEMPER_SECRETS_KEY environment variable, when set, holds the key itself instead.
   */
  secretsKeyFile: z.string().min(1),
});

export type PlatformSettings = z.output<typeof settingsSchema>;

type Env = Record<string, string | undefined>;

/** The data directory: TEMPER_HOME, else ~/.temper. */
export function defaultDataDir(env: Env = process.env): string {
  return env.TEMPER_HOME || join(homedir(), '.temper');
}

export const SECRETS_KEY_FILE_NAME = 'secrets.key';

/** Where `temper up` writes the API URL, account and key the CLI uses by default. */
export function credentialsPath(dataDir: string): string {
  return join(dataDir, 'credentials.json');
}

/** Defaults under the data directory, then TEMPER_* environment variables, then overrides. */
export function platformSettings(
  overrides: Partial<PlatformSettings> = {},
  env: Env = process.env,
): PlatformSettings {
  const dataDir = overrides.dataDir ?? defaultDataDir(env);
  const pick = (key: keyof PlatformSettings, name: string, fallback: string | number) =>
    overrides[key] ?? env[name] ?? fallback;
  const parsed = settingsSchema.safeParse({
    dataDir,
    storeUrl: pick('storeUrl', 'TEMPER_STORE_URL', `sqlite://${join(dataDir, 'temper.db')}`),
    artifactsUrl: pick('artifactsUrl', 'TEMPER_ARTIFACTS_URL', fileUrl(dataDir, 'artifacts')),
    checkpointsUrl: pick(
      'checkpointsUrl',
      'TEMPER_CHECKPOINTS_URL',
      fileUrl(dataDir, 'checkpoints'),
    ),
    temporalAddress: pick('temporalAddress', 'TEMPER_TEMPORAL_ADDRESS', '127.0.0.1:7233'),
    temporalNamespace: pick('temporalNamespace', 'TEMPER_TEMPORAL_NAMESPACE', 'default'),
    taskQueue: pick('taskQueue', 'TEMPER_TASK_QUEUE', SHARED_TASK_QUEUE),
    trainersDir: pick('trainersDir', 'TEMPER_TRAINERS_DIR', join(dataDir, 'trainers')),
    apiPort: Number(pick('apiPort', 'TEMPER_API_PORT', 8080)),
    rolloutTracerHost: pick('rolloutTracerHost', 'TEMPER_ROLLOUT_TRACER_HOST', '127.0.0.1'),
    secretsKeyFile: pick(
      'secretsKeyFile',
      'TEMPER_SECRETS_KEY_FILE',
      join(dataDir, SECRETS_KEY_FILE_NAME),
    ),
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`invalid platform settings: ${issue.path.join('.')}: ${issue.message}`);
  }
  return parsed.data;
}

function fileUrl(dir: string, sub: string): string {
  return pathToFileURL(join(dir, sub)).href;
}

/** This machine's worker host id: its host name, made a valid id. */
export function defaultHostId(): string {
  return (
    hostname()
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'host'
  );
}

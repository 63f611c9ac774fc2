/**
 * The control plane's store: `openStore(url)` picks the implementation from the URL.
 *
 *   sqlite:///abs/path/temper.db   a file (created if missing; its directory must exist)
 *   sqlite::memory:                a private in-memory database (tests, one process only)
 *   postgres://user@host:5432/db   PostgreSQL (also postgresql://); options in the URL as
 *                                  node-postgres reads them
 *
 * The store comes back unmigrated: call `migrate()` once before use (cheap when up to date).
 * `migrate()` also checks the sealed values (secrets, trainer jobs' pod tokens): it refuses a
 * database holding values the given `secretsKey` cannot open, and seals any stored in plain
 * text by an older temper.
 */
import { fileURLToPath } from 'node:url';
import { PostgresStore } from './postgres.js';
import type { SecretsKey } from './secrets-key.js';
import { SqliteStore } from './sqlite.js';
import { type Store, StoreError } from './types.js';

export { LATEST_VERSION, MIGRATIONS, type Migration } from './migrations.js';
export { PostgresStore, type PostgresStoreOptions } from './postgres.js';
export {
  isStatusRecordKey,
  type RolloutLogRecord,
  rolloutLogPrefix,
  rolloutLogRecordSchema,
} from './rollout-logs.js';
export { type SealedValue, SecretsKey } from './secrets-key.js';
export { SqliteStore, type SqliteStoreOptions } from './sqlite.js';
export * from './types.js';
export {
  FINE_TUNING_USAGE,
  TEXT_COMPLETION_INFERENCE_USAGE,
  TRAINER_USAGE,
  USAGE_TYPES,
  type UsageEventFields,
  type UsageType,
  usageEvent,
} from './usage-events.js';

export interface OpenStoreOptions {
  /** The operator's key that seals secret values and trainer tokens at rest (see secrets-key.ts). */
  secretsKey?: SecretsKey;
}

export function openStore(url: string, options: OpenStoreOptions = {}): Store {
  const key = options.secretsKey ? { secretsKey: options.secretsKey } : {};
  if (url === 'sqlite::memory:') return new SqliteStore(':memory:', key);
  if (url.startsWith('sqlite://')) return new SqliteStore(sqlitePath(url), key);
  if (url.startsWith('postgres://') || url.startsWith('postgresql://'))
    return new PostgresStore(url, key);
  throw new StoreError(
    'invalid_argument',
    `unsupported store URL "${redact(url)}": use sqlite:///abs/path.db, sqlite::memory: or postgres://...`,
  );
}

/** `sqlite:///abs/path.db` → `/abs/path.db` (percent-escapes decoded, like file URLs). */
function sqlitePath(url: string): string {
  const rest = url.slice('sqlite://'.length);
  if (!rest.startsWith('/'))
    throw new StoreError(
      'invalid_argument',
      `SQLite store URL "${url}" needs an absolute path: sqlite:///abs/path.db (three slashes)`,
    );
  return fileURLToPath(`file://${rest}`);
}

/** A URL safe to put in an error message: no password. */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
}

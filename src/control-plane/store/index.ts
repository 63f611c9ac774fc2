/**
 * The control plane's store: `openStore(url)` picks the implementation from the URL.
 *
 *   sqlite:///abs/path/temper.db   a file (created if missing; its directory must exist)
 *   sqlite::memory:                a private in-memory database (tests, one process only)
 *   postgres://user@host:5432/db   PostgreSQL (also postgresql://); options in the URL as
 *                                  node-postgres reads them
 *
 * The store comes back unmigrated: call `migrate()` once before use (cheap when up to date).
 */
import { fileURLToPath } from 'node:url';
import { PostgresStore } from './postgres.js';
import { SqliteStore } from './sqlite.js';
import { type Store, StoreError } from './types.js';

export { LATEST_VERSION, MIGRATIONS, type Migration } from './migrations.js';
export { PostgresStore, type PostgresStoreOptions } from './postgres.js';
export { SqliteStore, type SqliteStoreOptions } from './sqlite.js';
export * from './types.js';

export function openStore(url: string): Store {
  if (url === 'sqlite::memory:') return new SqliteStore(':memory:');
  if (url.startsWith('sqlite://')) return new SqliteStore(sqlitePath(url));
  if (url.startsWith('postgres://') || url.startsWith('postgresql://'))
    return new PostgresStore(url);
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

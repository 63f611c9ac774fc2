/**
 * The store's schema as numbered migrations. A migration is never edited once released:
 * schema changes are new entries at the end. Each implementation applies the pending ones in
 * one transaction under a lock (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE) and
 * records them in `schema_migrations`, so two processes starting together migrate once.
 *
 * Both dialects hold the same tables and columns. Times are RFC 3339 text in SQLite and
 * timestamptz in PostgreSQL, always written with millisecond precision by the store; JSON is
 * text in SQLite and JSONB in PostgreSQL. Text keys that are paged over use the "C" collation
 * in PostgreSQL so rows sort byte-wise, as in SQLite.
 */
import { StoreError } from './types.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Migration {
  version: number;
  description: string;
  /** One script for both dialects, or one per dialect. */
  sql: string | Record<Dialect, string>;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'accounts, API keys, resources, metrics',
    sql: {
      sqlite: `
        CREATE TABLE accounts (
          account      TEXT PRIMARY KEY,
          display_name TEXT NOT NULL DEFAULT '',
          create_time  TEXT NOT NULL
        ) STRICT;
        CREATE TABLE api_keys (
          key_id        TEXT PRIMARY KEY,
          account       TEXT NOT NULL REFERENCES accounts (account) ON DELETE CASCADE,
          secret_sha256 TEXT NOT NULL UNIQUE,
          display_name  TEXT NOT NULL DEFAULT '',
          create_time   TEXT NOT NULL
        ) STRICT;
        CREATE INDEX api_keys_by_account ON api_keys (account, create_time, key_id);
        CREATE TABLE resources (
          account     TEXT NOT NULL,
          collection  TEXT NOT NULL,
          id          TEXT NOT NULL,
          body        TEXT NOT NULL,
          version     INTEGER NOT NULL,
          create_time TEXT NOT NULL,
          update_time TEXT NOT NULL,
          PRIMARY KEY (account, collection, id)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX resources_by_create_time ON resources (account, collection, create_time, id);
        CREATE TABLE metrics (
          name          TEXT NOT NULL,
          step          INTEGER NOT NULL,
          metric_values TEXT NOT NULL,
          time          TEXT NOT NULL,
          PRIMARY KEY (name, step)
        ) STRICT, WITHOUT ROWID;
      `,
      postgres: `
        CREATE TABLE accounts (
          account      text PRIMARY KEY,
          display_name text NOT NULL DEFAULT '',
          create_time  timestamptz NOT NULL
        );
        CREATE TABLE api_keys (
          key_id        text PRIMARY KEY,
          account       text NOT NULL REFERENCES accounts (account) ON DELETE CASCADE,
          secret_sha256 text NOT NULL UNIQUE,
          display_name  text NOT NULL DEFAULT '',
          create_time   timestamptz NOT NULL
        );
        CREATE INDEX api_keys_by_account ON api_keys (account, create_time, key_id);
        CREATE TABLE resources (
          account     text COLLATE "C" NOT NULL,
          collection  text COLLATE "C" NOT NULL,
          id          text COLLATE "C" NOT NULL,
          body        jsonb NOT NULL,
          version     integer NOT NULL,
          create_time timestamptz NOT NULL,
          update_time timestamptz NOT NULL,
          PRIMARY KEY (account, collection, id)
        );
        CREATE INDEX resources_by_create_time ON resources (account, collection, create_time, id);
        CREATE TABLE metrics (
          name          text COLLATE "C" NOT NULL,
          step          bigint NOT NULL,
          metric_values jsonb NOT NULL,
          time          timestamptz NOT NULL,
          PRIMARY KEY (name, step)
        );
      `,
    },
  },
  {
    version: 2,
    description: 'usage events (billing export)',
    // Columns that do not apply to a usage type are NULL. Counts are 64-bit (parameter counts
    // pass 2^31); the (account, start_time) index serves the export's range scan, with id
    // last so rows starting in the same millisecond come back in a stable order.
    sql: {
      sqlite: `
        CREATE TABLE usage_events (
          id                  TEXT PRIMARY KEY,
          account             TEXT NOT NULL,
          start_time          TEXT NOT NULL,
          end_time            TEXT NOT NULL,
          usage_type          TEXT NOT NULL,
          accelerator_type    TEXT,
          accelerator_seconds REAL,
          base_model_name     TEXT,
          model_bucket        TEXT,
          parameter_count     INTEGER,
          prompt_tokens       INTEGER,
          completion_tokens   INTEGER,
          source              TEXT
        ) STRICT;
        CREATE INDEX usage_events_by_start_time ON usage_events (account, start_time, id);
      `,
      postgres: `
        CREATE TABLE usage_events (
          id                  text COLLATE "C" PRIMARY KEY,
          account             text COLLATE "C" NOT NULL,
          start_time          timestamptz NOT NULL,
          end_time            timestamptz NOT NULL,
          usage_type          text NOT NULL,
          accelerator_type    text,
          accelerator_seconds double precision,
          base_model_name     text,
          model_bucket        text,
          parameter_count     bigint,
          prompt_tokens       bigint,
          completion_tokens   bigint,
          source              text
        );
        CREATE INDEX usage_events_by_start_time ON usage_events (account, start_time, id);
      `,
    },
  },
  {
    version: 3,
    description: 'deployments (the deployment registry across restarts)',
    // One row per deployment the control plane's registry should run: its name, account and
    // the registry's spec (opaque JSON, never a credential). A row lives from create to
    // delete; the registry brings every row back when the control plane starts.
    sql: {
      sqlite: `
        CREATE TABLE deployments (
          name        TEXT PRIMARY KEY,
          account     TEXT NOT NULL,
          spec        TEXT NOT NULL,
          create_time TEXT NOT NULL,
          update_time TEXT NOT NULL
        ) STRICT;
      `,
      postgres: `
        CREATE TABLE deployments (
          name        text COLLATE "C" PRIMARY KEY,
          account     text COLLATE "C" NOT NULL,
          spec        jsonb NOT NULL,
          create_time timestamptz NOT NULL,
          update_time timestamptz NOT NULL
        );
      `,
    },
  },
];

/** Created before anything else, outside the numbered list (it records that list). */
export const SCHEMA_MIGRATIONS_TABLE: Record<Dialect, string> = {
  sqlite: `CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
  ) STRICT`,
  postgres: `CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL
  )`,
};

export function migrationSql(migration: Migration, dialect: Dialect): string {
  return typeof migration.sql === 'string' ? migration.sql : migration.sql[dialect];
}

export const LATEST_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/**
 * The migrations still to apply, in order, given the versions already recorded. A database
 * from a newer temper is refused rather than run with a schema this code does not know.
 */
export function pendingMigrations(applied: Iterable<number>): Migration[] {
  const done = new Set(applied);
  const newest = Math.max(0, ...done);
  if (newest > LATEST_VERSION)
    throw new StoreError(
      'invalid_argument',
      `the database schema is at version ${newest}, newer than this temper knows (${LATEST_VERSION}): upgrade temper`,
    );
  return MIGRATIONS.filter((m) => !done.has(m.version));
}

/** Versions must be 1, 2, 3, ...: checked once at load so a bad edit fails every test. */
function checkNumbering(): void {
  MIGRATIONS.forEach((m, i) => {
    if (m.version !== i + 1)
      throw new Error(`store migration #${i} has version ${m.version}, expected ${i + 1}`);
  });
}
checkNumbering();

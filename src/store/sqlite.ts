/**
 * The embedded store: one SQLite file (or `:memory:`) through better-sqlite3.
 *
 * better-sqlite3 is synchronous, so every method runs to completion before the next one
 * starts in this process: read-modify-write in `update` cannot interleave with another call
 * here. Other processes on the same file are kept out by write transactions that start with
 * BEGIN IMMEDIATE (the write lock is taken before the read), and they wait for each other up
 * to the busy timeout instead of failing at once.
 */
import Database from 'better-sqlite3';
import {
  accountRecord,
  alreadyExists,
  apiKeyLookupHash,
  apiKeyRecord,
  checkCollection,
  checkDeploymentRow,
  checkFieldName,
  checkId,
  checkMetricQuery,
  checkPageSize,
  checkUpdate,
  decodePageToken,
  encodeJson,
  metricRow,
  newApiKey,
  notFound,
  now,
  prepareMetrics,
  prepareUsage,
  type RawMetric,
  type RawResource,
  type RawUsage,
  resourceName,
  resourceRow,
  toPage,
  USAGE_COLUMNS,
  usageEventRow,
  usageRange,
} from './common.js';
import { migrationSql, pendingMigrations, SCHEMA_MIGRATIONS_TABLE } from './migrations.js';
import {
  checkStoredBody,
  openRow,
  rewrapBody,
  sealBody,
  sealedRowsCondition,
} from './secret-bodies.js';
import type { SecretsKey } from './secrets-key.js';
import type {
  AccountRecord,
  ApiKeyRecord,
  Collection,
  DeploymentRow,
  ListOptions,
  MetricRow,
  Page,
  ResourceRow,
  Store,
  TimeRange,
  UpdateOptions,
  UsageEvent,
} from './types.js';
import { StoreError } from './types.js';

export interface SqliteStoreOptions {
  /** How long a write waits for another process's write lock, in ms (default 10 s). */
  busyTimeoutMs?: number;
  /** Seals secret values at rest (without one, secrets cannot be written). */
  secretsKey?: SecretsKey;
}

interface RawApiKey {
  key_id: string;
  account: string;
  display_name: string;
  create_time: string;
}

export class SqliteStore implements Store {
  readonly dialect = 'sqlite';
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly secretsKey: SecretsKey | undefined;

  /** `path` is a file path or `:memory:`. */
  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.db = new Database(path);
    // The busy timeout first: switching to WAL takes a lock another process may hold.
    this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 10_000}`);
    this.db.pragma('journal_mode = WAL');
    // WAL + NORMAL stays consistent after a crash; only the last commits may be lost on
    // power failure, which is the documented trade-off for not syncing every commit.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.secretsKey = options.secretsKey;
  }

  async migrate(): Promise<void> {
    this.db
      .transaction(() => {
        this.db.exec(SCHEMA_MIGRATIONS_TABLE.sqlite);
        const applied = this.db
          .prepare('SELECT version FROM schema_migrations')
          .pluck()
          .all() as number[];
        const record = this.db.prepare(
          'INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)',
        );
        for (const migration of pendingMigrations(applied)) {
          this.db.exec(migrationSql(migration, 'sqlite'));
          record.run(migration.version, migration.description, now());
        }
        this.sweepSealed();
      })
      .immediate();
  }

  /**
   * Start-up check of the sealed fields (secrets, trainer tokens): refuses (throws) when one
   * cannot be opened with this store's key, and seals values stored in plain text by an older
   * temper.
   */
  private sweepSealed(): void {
    for (const raw of this.sealedRows()) {
      const row = resourceRow(raw);
      if (checkStoredBody(this.secretsKey, row.collection, row.name, row.body) === 'seal')
        this.rewriteBody(row, sealBody(this.secretsKey, row.collection, row.name, row.body));
    }
  }

  async rewrapSecrets(next: SecretsKey): Promise<number> {
    const key = this.secretsKey;
    if (!key)
      throw new StoreError('failed_precondition', 'rewrapSecrets needs the current secrets key');
    return this.db
      .transaction(() => {
        const rows = this.sealedRows().map((raw) => resourceRow(raw));
        for (const row of rows)
          this.rewriteBody(row, rewrapBody(key, next, row.collection, row.name, row.body));
        return rows.length;
      })
      .immediate();
  }

  /** Rows holding a sealed field or its plain form. */
  private sealedRows(): RawResource[] {
    return this.statement(
      `SELECT * FROM resources WHERE ${sealedRowsCondition('sqlite')} ORDER BY collection, account, id`,
    ).all() as RawResource[];
  }

  /** A new stored form of the same resource (version and times unchanged: nothing the user set changed). */
  private rewriteBody(row: ResourceRow, body: unknown): void {
    this.statement(
      'UPDATE resources SET body = ? WHERE account = ? AND collection = ? AND id = ?',
    ).run(encodeJson(body, 'body'), row.account, row.collection, row.id);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  // ---- accounts and API keys ----

  async ensureAccount(account: string, displayName = ''): Promise<void> {
    checkId('account', account);
    this.statement(
      'INSERT INTO accounts (account, display_name, create_time) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    ).run(account, displayName, now());
  }

  async accountExists(account: string): Promise<boolean> {
    return this.statement('SELECT 1 FROM accounts WHERE account = ?').get(account) !== undefined;
  }

  async getAccount(account: string): Promise<AccountRecord | undefined> {
    const row = this.statement(
      'SELECT account, display_name, create_time FROM accounts WHERE account = ?',
    ).get(account) as Parameters<typeof accountRecord>[0] | undefined;
    return row && accountRecord(row);
  }

  async createApiKey(
    account: string,
    displayName = '',
  ): Promise<{ key: ApiKeyRecord; secret: string }> {
    const { keyId, secret, secretSha256 } = newApiKey();
    const key = { keyId, account, displayName, createTime: now() };
    try {
      this.statement(
        'INSERT INTO api_keys (key_id, account, secret_sha256, display_name, create_time) VALUES (?, ?, ?, ?, ?)',
      ).run(keyId, account, secretSha256, displayName, key.createTime);
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY')
        throw new StoreError('not_found', `account ${account} not found: ensureAccount first`);
      throw error;
    }
    return { key, secret };
  }

  async resolveApiKey(secret: string): Promise<ApiKeyRecord | undefined> {
    const hash = apiKeyLookupHash(secret);
    if (hash === undefined) return undefined;
    const row = this.statement(
      'SELECT key_id, account, display_name, create_time FROM api_keys WHERE secret_sha256 = ?',
    ).get(hash) as RawApiKey | undefined;
    return row && apiKeyRecord(row);
  }

  async listApiKeys(account: string): Promise<ApiKeyRecord[]> {
    const rows = this.statement(
      'SELECT key_id, account, display_name, create_time FROM api_keys WHERE account = ? ORDER BY create_time, key_id',
    ).all(account) as RawApiKey[];
    return rows.map(apiKeyRecord);
  }

  async deleteApiKey(account: string, keyId: string): Promise<boolean> {
    return (
      this.statement('DELETE FROM api_keys WHERE account = ? AND key_id = ?').run(account, keyId)
        .changes > 0
    );
  }

  // ---- resources ----

  async create<T>(
    collection: Collection,
    account: string,
    id: string,
    body: T,
  ): Promise<ResourceRow<T>> {
    checkCollection(collection);
    checkId('account', account);
    checkId('id', id);
    const name = resourceName(collection, account, id);
    const json = encodeJson(sealBody(this.secretsKey, collection, name, body), 'body');
    const time = now();
    const inserted = this.statement(
      `INSERT INTO resources (account, collection, id, body, version, create_time, update_time)
         VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT DO NOTHING`,
    ).run(account, collection, id, json, time, time);
    if (inserted.changes === 0) throw alreadyExists(resourceName(collection, account, id));
    return this.read<T>(collection, account, id)!;
  }

  async get<T>(
    collection: Collection,
    account: string,
    id: string,
  ): Promise<ResourceRow<T> | undefined> {
    checkCollection(collection);
    return this.read<T>(collection, account, id);
  }

  async list<T>(
    collection: Collection,
    account: string,
    options: ListOptions = {},
  ): Promise<Page<T>> {
    checkCollection(collection);
    const pageSize = checkPageSize(options.pageSize);
    const after = decodePageToken(options.pageToken);
    // Row-value comparison walks resources_by_create_time from the cursor on.
    const rows = this.statement(
      `SELECT * FROM resources
         WHERE account = ? AND collection = ? AND (create_time, id) > (?, ?)
         ORDER BY create_time, id LIMIT ?`,
    ).all(
      account,
      collection,
      after?.createTime ?? '',
      after?.id ?? '',
      pageSize + 1,
    ) as RawResource[];
    return toPage(
      rows.map((row) => openRow(this.secretsKey, resourceRow<T>(row))),
      pageSize,
    );
  }

  async update<T>(
    collection: Collection,
    account: string,
    id: string,
    mutate: (body: T) => T,
    options: UpdateOptions = {},
  ): Promise<ResourceRow<T>> {
    checkCollection(collection);
    const name = resourceName(collection, account, id);
    return this.db
      .transaction(() => {
        const current = this.read<T>(collection, account, id);
        if (current === undefined) throw notFound(name);
        checkUpdate(name, current, options);
        const json = encodeJson(
          sealBody(this.secretsKey, collection, name, mutate(current.body)),
          'the body returned by mutate',
        );
        this.statement(
          `UPDATE resources SET body = ?, version = version + 1, update_time = ?
             WHERE account = ? AND collection = ? AND id = ?`,
        ).run(json, now(), account, collection, id);
        return this.read<T>(collection, account, id)!;
      })
      .immediate();
  }

  async delete(collection: Collection, account: string, id: string): Promise<boolean> {
    checkCollection(collection);
    return this.db
      .transaction(() => {
        const deleted = this.statement(
          'DELETE FROM resources WHERE account = ? AND collection = ? AND id = ?',
        ).run(account, collection, id);
        this.statement('DELETE FROM metrics WHERE name = ?').run(
          resourceName(collection, account, id),
        );
        return deleted.changes > 0;
      })
      .immediate();
  }

  async countBy(
    collection: Collection,
    field: string,
  ): Promise<Array<{ value: string; count: number }>> {
    checkCollection(collection);
    checkFieldName(field);
    const rows = this.statement(
      `SELECT COALESCE(json_extract(body, ?), '') AS value, COUNT(*) AS count
         FROM resources WHERE collection = ? GROUP BY 1 ORDER BY 1`,
    ).all(`$.${field}`, collection) as Array<{ value: unknown; count: number }>;
    return rows.map((r) => ({ value: String(r.value), count: Number(r.count) }));
  }

  // ---- metrics ----

  async putMetrics(name: string, rows: MetricRow[]): Promise<void> {
    const prepared = prepareMetrics(name, rows);
    const upsert = this.statement(
      `INSERT INTO metrics (name, step, metric_values, time) VALUES (?, ?, ?, ?)
       ON CONFLICT (name, step) DO UPDATE SET metric_values = excluded.metric_values, time = excluded.time`,
    );
    this.db
      .transaction(() => {
        for (const row of prepared) upsert.run(name, row.step, row.valuesJson, row.time);
      })
      .immediate();
  }

  async listMetrics(
    name: string,
    options?: { afterStep?: number; limit?: number },
  ): Promise<MetricRow[]> {
    const { afterStep, limit } = checkMetricQuery(options);
    const rows = this.statement(
      'SELECT step, metric_values, time FROM metrics WHERE name = ? AND step > ? ORDER BY step LIMIT ?',
    ).all(name, afterStep, limit ?? -1) as RawMetric[];
    return rows.map(metricRow);
  }

  // ---- usage ----

  async recordUsage(events: UsageEvent[]): Promise<void> {
    const rows = prepareUsage(events);
    const insert = this.statement(
      `INSERT INTO usage_events (${USAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO NOTHING`,
    );
    this.db
      .transaction(() => {
        for (const row of rows) insert.run(...row);
      })
      .immediate();
  }

  async listUsage(account: string, range: TimeRange): Promise<UsageEvent[]> {
    const { startTime, endTime } = usageRange(range);
    // Stored times share one text form (usageTime), so text order is time order here.
    const rows = this.statement(
      `SELECT ${USAGE_COLUMNS} FROM usage_events
         WHERE account = ? AND start_time >= ? AND start_time < ? ORDER BY start_time, id`,
    ).all(account, startTime, endTime) as RawUsage[];
    return rows.map(usageEventRow);
  }

  // ---- deployments ----

  async putDeployment(record: DeploymentRow): Promise<void> {
    checkDeploymentRow(record);
    const time = now();
    this.statement(
      `INSERT INTO deployments (name, account, spec, create_time, update_time) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, update_time = excluded.update_time`,
    ).run(record.name, record.account, encodeJson(record.spec, 'spec'), time, time);
  }

  async deleteDeployment(name: string): Promise<boolean> {
    return this.statement('DELETE FROM deployments WHERE name = ?').run(name).changes > 0;
  }

  async listDeployments(): Promise<DeploymentRow[]> {
    const rows = this.statement(
      'SELECT name, account, spec FROM deployments ORDER BY create_time, name',
    ).all() as Array<{ name: string; account: string; spec: string }>;
    return rows.map((r) => ({ name: r.name, account: r.account, spec: JSON.parse(r.spec) }));
  }

  /** Statements are compiled once per connection; the SQL text is the cache key. */
  private statement(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  private read<T>(collection: Collection, account: string, id: string): ResourceRow<T> | undefined {
    const row = this.statement(
      'SELECT * FROM resources WHERE account = ? AND collection = ? AND id = ?',
    ).get(account, collection, id) as RawResource | undefined;
    return row && openRow(this.secretsKey, resourceRow<T>(row));
  }
}

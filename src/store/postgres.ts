/**
 * The multi-machine store: PostgreSQL through a node-postgres pool. Bodies are JSONB, times
 * timestamptz (written with millisecond precision, so both dialects return the same text).
 *
 * Writes that read first run in a transaction that locks the row (`SELECT ... FOR UPDATE`):
 * concurrent updates of one resource, from this process or another, queue on the row lock
 * instead of overwriting each other. Migrations take a transaction-scoped advisory lock, so
 * control planes starting together apply them once.
 */
import pg from 'pg';
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

export interface PostgresStoreOptions {
  /** Pool size (default 10). */
  maxConnections?: number;
  /** Seals secret values at rest (without one, secrets cannot be written). */
  secretsKey?: SecretsKey;
}

/** Any fixed 64-bit number works; this one is "temper" in ASCII, to be recognisable in pg_locks. */
const MIGRATION_LOCK_KEY = '127978976601458'; // 0x74656d706572

const RESOURCE_COLUMNS = 'account, collection, id, body, version, create_time, update_time';

/** PostgreSQL array types of the usage_events columns, in USAGE_COLUMNS order. */
const USAGE_ARRAY_TYPES = [
  'text',
  'text',
  'timestamptz',
  'timestamptz',
  'text',
  'text',
  'float8',
  'text',
  'text',
  'int8',
  'int8',
  'int8',
  'text',
] as const;

interface RawApiKey {
  key_id: string;
  account: string;
  display_name: string;
  create_time: Date;
}

export class PostgresStore implements Store {
  readonly dialect = 'postgres';
  private readonly pool: pg.Pool;
  private readonly secretsKey: SecretsKey | undefined;

  constructor(connectionString: string, options: PostgresStoreOptions = {}) {
    this.pool = new pg.Pool({ connectionString, max: options.maxConnections ?? 10 });
    // An idle client whose connection drops (server restart) emits here; without a listener
    // that would crash the process. The pool discards it and the next query reconnects.
    this.pool.on('error', () => {});
    this.secretsKey = options.secretsKey;
  }

  async migrate(): Promise<void> {
    await this.transaction(async (client) => {
      await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
      await client.query(SCHEMA_MIGRATIONS_TABLE.postgres);
      const applied = await client.query<{ version: number }>(
        'SELECT version FROM schema_migrations',
      );
      for (const migration of pendingMigrations(applied.rows.map((r) => r.version))) {
        await client.query(migrationSql(migration, 'postgres'));
        await client.query(
          'INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)',
          [migration.version, migration.description, now()],
        );
      }
      // Start-up check of the sealed fields (secrets, trainer tokens): refuses (throws) when
      // one cannot be opened with this store's key, and seals values stored in plain text by
      // an older temper.
      for (const row of await this.sealedRows(client))
        if (checkStoredBody(this.secretsKey, row.collection, row.name, row.body) === 'seal')
          await this.rewriteBody(
            client,
            row,
            sealBody(this.secretsKey, row.collection, row.name, row.body),
          );
    });
  }

  async rewrapSecrets(next: SecretsKey): Promise<number> {
    const key = this.secretsKey;
    if (!key)
      throw new StoreError('failed_precondition', 'rewrapSecrets needs the current secrets key');
    return this.transaction(async (client) => {
      const rows = await this.sealedRows(client);
      for (const row of rows)
        await this.rewriteBody(
          client,
          row,
          rewrapBody(key, next, row.collection, row.name, row.body),
        );
      return rows.length;
    });
  }

  /** Rows holding a sealed field (or its plain form), locked until the transaction ends. */
  private async sealedRows(client: pg.PoolClient): Promise<ResourceRow[]> {
    const result = await client.query<RawResource>(
      `SELECT ${RESOURCE_COLUMNS} FROM resources WHERE ${sealedRowsCondition('postgres')} ORDER BY collection, account, id FOR UPDATE`,
    );
    return result.rows.map((raw) => resourceRow(raw));
  }

  /** A new stored form of the same resource (version and times unchanged: nothing the user set changed). */
  private async rewriteBody(client: pg.PoolClient, row: ResourceRow, body: unknown) {
    await client.query(
      'UPDATE resources SET body = $4::jsonb WHERE account = $1 AND collection = $2 AND id = $3',
      [row.account, row.collection, row.id, encodeJson(body, 'body')],
    );
  }

  async close(): Promise<void> {
    if (!this.pool.ended) await this.pool.end();
  }

  // ---- accounts and API keys ----

  async ensureAccount(account: string, displayName = ''): Promise<void> {
    checkId('account', account);
    await this.pool.query(
      'INSERT INTO accounts (account, display_name, create_time) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
      [account, displayName, now()],
    );
  }

  async accountExists(account: string): Promise<boolean> {
    const result = await this.pool.query('SELECT 1 FROM accounts WHERE account = $1', [account]);
    return result.rowCount !== null && result.rowCount > 0;
  }

  async getAccount(account: string): Promise<AccountRecord | undefined> {
    const result = await this.pool.query<Parameters<typeof accountRecord>[0]>(
      'SELECT account, display_name, create_time FROM accounts WHERE account = $1',
      [account],
    );
    const row = result.rows[0];
    return row && accountRecord(row);
  }

  async createApiKey(
    account: string,
    displayName = '',
  ): Promise<{ key: ApiKeyRecord; secret: string }> {
    const { keyId, secret, secretSha256 } = newApiKey();
    const key = { keyId, account, displayName, createTime: now() };
    try {
      await this.pool.query(
        'INSERT INTO api_keys (key_id, account, secret_sha256, display_name, create_time) VALUES ($1, $2, $3, $4, $5)',
        [keyId, account, secretSha256, displayName, key.createTime],
      );
    } catch (error) {
      if ((error as { code?: string }).code === '23503')
        throw new StoreError('not_found', `account ${account} not found: ensureAccount first`);
      throw error;
    }
    return { key, secret };
  }

  async resolveApiKey(secret: string): Promise<ApiKeyRecord | undefined> {
    const hash = apiKeyLookupHash(secret);
    if (hash === undefined) return undefined;
    const result = await this.pool.query<RawApiKey>(
      'SELECT key_id, account, display_name, create_time FROM api_keys WHERE secret_sha256 = $1',
      [hash],
    );
    const row = result.rows[0];
    return row && apiKeyRecord(row);
  }

  async listApiKeys(account: string): Promise<ApiKeyRecord[]> {
    const result = await this.pool.query<RawApiKey>(
      'SELECT key_id, account, display_name, create_time FROM api_keys WHERE account = $1 ORDER BY create_time, key_id',
      [account],
    );
    return result.rows.map(apiKeyRecord);
  }

  async deleteApiKey(account: string, keyId: string): Promise<boolean> {
    const result = await this.pool.query(
      'DELETE FROM api_keys WHERE account = $1 AND key_id = $2',
      [account, keyId],
    );
    return (result.rowCount ?? 0) > 0;
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
    const result = await this.pool.query<RawResource>(
      `INSERT INTO resources (${RESOURCE_COLUMNS}) VALUES ($1, $2, $3, $4::jsonb, 1, $5, $5)
       ON CONFLICT DO NOTHING RETURNING ${RESOURCE_COLUMNS}`,
      [account, collection, id, json, time],
    );
    const row = result.rows[0];
    if (row === undefined) throw alreadyExists(name);
    return openRow(this.secretsKey, resourceRow<T>(row));
  }

  async get<T>(
    collection: Collection,
    account: string,
    id: string,
  ): Promise<ResourceRow<T> | undefined> {
    checkCollection(collection);
    const result = await this.pool.query<RawResource>(
      `SELECT ${RESOURCE_COLUMNS} FROM resources WHERE account = $1 AND collection = $2 AND id = $3`,
      [account, collection, id],
    );
    const row = result.rows[0];
    return row && openRow(this.secretsKey, resourceRow<T>(row));
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
    const result = await this.pool.query<RawResource>(
      `SELECT ${RESOURCE_COLUMNS} FROM resources
       WHERE account = $1 AND collection = $2 AND (create_time, id) > ($3::timestamptz, $4)
       ORDER BY create_time, id LIMIT $5`,
      [account, collection, after?.createTime ?? '-infinity', after?.id ?? '', pageSize + 1],
    );
    return toPage(
      result.rows.map((row) => openRow(this.secretsKey, resourceRow<T>(row))),
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
    return this.transaction(async (client) => {
      const locked = await client.query<RawResource>(
        `SELECT ${RESOURCE_COLUMNS} FROM resources
         WHERE account = $1 AND collection = $2 AND id = $3 FOR UPDATE`,
        [account, collection, id],
      );
      const raw = locked.rows[0];
      if (raw === undefined) throw notFound(name);
      const current = openRow(this.secretsKey, resourceRow<T>(raw));
      checkUpdate(name, current, options);
      const json = encodeJson(
        sealBody(this.secretsKey, collection, name, mutate(current.body)),
        'the body returned by mutate',
      );
      const updated = await client.query<RawResource>(
        `UPDATE resources SET body = $4::jsonb, version = version + 1, update_time = $5
         WHERE account = $1 AND collection = $2 AND id = $3 RETURNING ${RESOURCE_COLUMNS}`,
        [account, collection, id, json, now()],
      );
      return openRow(this.secretsKey, resourceRow<T>(updated.rows[0]!));
    });
  }

  async delete(collection: Collection, account: string, id: string): Promise<boolean> {
    checkCollection(collection);
    return this.transaction(async (client) => {
      const deleted = await client.query(
        'DELETE FROM resources WHERE account = $1 AND collection = $2 AND id = $3',
        [account, collection, id],
      );
      await client.query('DELETE FROM metrics WHERE name = $1', [
        resourceName(collection, account, id),
      ]);
      return (deleted.rowCount ?? 0) > 0;
    });
  }

  async countBy(
    collection: Collection,
    field: string,
  ): Promise<Array<{ value: string; count: number }>> {
    checkCollection(collection);
    checkFieldName(field);
    const result = await this.pool.query<{ value: string; count: string }>(
      `SELECT COALESCE(body->>$1, '') AS value, COUNT(*) AS count
         FROM resources WHERE collection = $2 GROUP BY 1 ORDER BY 1`,
      [field, collection],
    );
    return result.rows.map((r) => ({ value: r.value, count: Number(r.count) }));
  }

  // ---- metrics ----

  async putMetrics(name: string, rows: MetricRow[]): Promise<void> {
    const prepared = prepareMetrics(name, rows);
    if (prepared.length === 0) return;
    // One statement for the whole batch; prepareMetrics made the steps unique, which
    // ON CONFLICT DO UPDATE requires within one statement.
    await this.pool.query(
      `INSERT INTO metrics (name, step, metric_values, time)
       SELECT $1, s, v, t FROM unnest($2::bigint[], $3::jsonb[], $4::timestamptz[]) AS u (s, v, t)
       ON CONFLICT (name, step) DO UPDATE SET metric_values = excluded.metric_values, time = excluded.time`,
      [
        name,
        prepared.map((r) => r.step),
        prepared.map((r) => r.valuesJson),
        prepared.map((r) => r.time),
      ],
    );
  }

  async listMetrics(
    name: string,
    options?: { afterStep?: number; limit?: number },
  ): Promise<MetricRow[]> {
    const { afterStep, limit } = checkMetricQuery(options);
    const result = await this.pool.query<RawMetric>(
      'SELECT step, metric_values, time FROM metrics WHERE name = $1 AND step > $2 ORDER BY step LIMIT $3',
      [name, afterStep, limit ?? null],
    );
    return result.rows.map(metricRow);
  }

  // ---- usage ----

  async recordUsage(events: UsageEvent[]): Promise<void> {
    const rows = prepareUsage(events);
    if (rows.length === 0) return;
    // One statement for the batch (atomic on its own): a column array per field, unnested
    // into rows. prepareUsage made the ids unique within the batch.
    const columns = USAGE_ARRAY_TYPES.map((_, i) => rows.map((row) => row[i] ?? null));
    const params = USAGE_ARRAY_TYPES.map((type, i) => `$${i + 1}::${type}[]`).join(', ');
    await this.pool.query(
      `INSERT INTO usage_events (${USAGE_COLUMNS})
       SELECT * FROM unnest(${params})
       ON CONFLICT (id) DO NOTHING`,
      columns,
    );
  }

  async listUsage(account: string, range: TimeRange): Promise<UsageEvent[]> {
    const { startTime, endTime } = usageRange(range);
    const result = await this.pool.query<RawUsage>(
      `SELECT ${USAGE_COLUMNS} FROM usage_events
       WHERE account = $1 AND start_time >= $2 AND start_time < $3 ORDER BY start_time, id`,
      [account, startTime, endTime],
    );
    return result.rows.map(usageEventRow);
  }

  /**
   * Runs `work` between BEGIN and COMMIT on one pooled connection; any error rolls back. A
   * connection whose ROLLBACK fails is broken and is destroyed rather than reused.
   */
  // ---- deployments ----

  async putDeployment(record: DeploymentRow): Promise<void> {
    checkDeploymentRow(record);
    await this.pool.query(
      `INSERT INTO deployments (name, account, spec, create_time, update_time)
       VALUES ($1, $2, $3::jsonb, $4, $4)
       ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, update_time = excluded.update_time`,
      [record.name, record.account, encodeJson(record.spec, 'spec'), now()],
    );
  }

  async deleteDeployment(name: string): Promise<boolean> {
    const result = await this.pool.query('DELETE FROM deployments WHERE name = $1', [name]);
    return (result.rowCount ?? 0) > 0;
  }

  async listDeployments(): Promise<DeploymentRow[]> {
    const result = await this.pool.query<{ name: string; account: string; spec: unknown }>(
      'SELECT name, account, spec FROM deployments ORDER BY create_time, name',
    );
    return result.rows.map((r) => ({ name: r.name, account: r.account, spec: r.spec }));
  }

  private async transaction<R>(work: (client: pg.PoolClient) => Promise<R>): Promise<R> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: Error) => {
        broken = rollbackError;
      });
      throw error;
    } finally {
      client.release(broken);
    }
  }
}

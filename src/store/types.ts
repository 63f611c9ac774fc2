/**
 * The control plane's persistence: one interface, two implementations (SQLite embedded,
 * PostgreSQL for the multi-machine shape) over one schema with numbered migrations.
 *
 * Resources are stored generically: a row per `accounts/{account}/{collection}/{id}` holding
 * the resource body as JSON, a monotonically increasing `version` (optimistic concurrency)
 * and create/update times. Collection-specific shape and validation live in the REST layer
 * (zod schemas); the store only guarantees atomicity, uniqueness and paging.
 */

import type { SecretsKey } from './secrets-key.js';

/** Collections the store holds (the REST collections plus internal ones). */
export const COLLECTIONS = [
  'datasets',
  'supervisedFineTuningJobs',
  'dpoJobs',
  'orpoJobs',
  'reinforcementFineTuningJobs',
  'rlorTrainerJobs',
  'models',
  'deployments',
  'evaluators',
  'secrets',
] as const;
export type Collection = (typeof COLLECTIONS)[number];

export interface ResourceRow<T = unknown> {
  account: string;
  collection: Collection;
  id: string;
  /** `accounts/{account}/{collection}/{id}` */
  name: string;
  body: T;
  /** Starts at 1, +1 on every update. */
  version: number;
  /** RFC 3339 with milliseconds, UTC. */
  createTime: string;
  updateTime: string;
}

export interface ListOptions {
  /** 1-200, default 50. */
  pageSize?: number;
  /** Opaque token from a previous page's `nextPageToken`. */
  pageToken?: string;
}

export interface Page<T> {
  /** Oldest first (create time, then id). */
  items: ResourceRow<T>[];
  /** Absent on the last page. */
  nextPageToken?: string;
}

export interface ApiKeyRecord {
  keyId: string;
  account: string;
  displayName: string;
  createTime: string;
}

export interface MetricRow {
  /** Training step (or evaluation step) the values belong to. */
  step: number;
  /** `name:reduction` keys, as the trainer reports them, plus anything the workflow adds. */
  values: Record<string, number | string | null>;
  time: string;
}

export interface AccountRecord {
  account: string;
  displayName: string;
  createTime: string;
}

/**
 * One metered piece of usage (billing export rows). Fields that do not apply to a usage type
 * are absent (NULL in the database): trainer time has no tokens, inference has no
 * accelerator seconds on serverless-style rows.
 */
export interface UsageEvent {
  /**
   * Unique across the store. Recording an id that exists already is a no-op, so a retried
   * activity that rebuilds the same event with the same id is metered once.
   */
  id: string;
  account: string;
  /** RFC 3339; stored and returned with milliseconds, UTC. */
  startTime: string;
  /** Not before startTime (equal for instantaneous usage such as one request). */
  endTime: string;
  /** `UPPER_SNAKE_CASE`, e.g. FINE_TUNING_USAGE (usage-events.ts). */
  usageType: string;
  acceleratorType?: string;
  acceleratorSeconds?: number;
  baseModelName?: string;
  modelBucket?: string;
  parameterCount?: number;
  promptTokens?: number;
  completionTokens?: number;
  /** The resource that caused it, e.g. `accounts/a/supervisedFineTuningJobs/j`. */
  source?: string;
}

/** A half-open time range [startTime, endTime), RFC 3339. */
export interface TimeRange {
  startTime: string;
  endTime: string;
}

/** Stable error codes; the REST layer maps them to HTTP statuses. */
export type StoreErrorCode =
  | 'already_exists'
  | 'not_found'
  | 'conflict'
  | 'invalid_argument'
  /** A conditional update found the row in a state it must not leave (UpdateOptions.unless). */
  | 'failed_precondition';

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

/**
 * The `failed_precondition` of a guarded update whose row matched the guard
 * (UpdateOptions.unless): the one refusal a caller may take as "the job has ended". Others of
 * that code (no secrets key to seal the body, a key that cannot open it) are failures.
 */
export class GuardRefusedError extends StoreError {
  constructor(message: string) {
    super('failed_precondition', message);
    this.name = 'GuardRefusedError';
  }
}

/**
 * A condition on the stored body under which an update must not happen: the body's top-level
 * `field` holds one of `values`. Job rows use it so that a final state (COMPLETED, CANCELLED,
 * ...) is never overwritten by a late progress or status write of an activity that had not yet
 * noticed the job ended. Checked inside the update's transaction, under the row's write lock,
 * so no write can slip in between the check and the update.
 */
export interface UpdateGuard {
  field: string;
  values: readonly string[];
}

export interface UpdateOptions {
  /** `conflict` if the row is at another version. */
  expectVersion?: number;
  /** `failed_precondition` (and nothing changes) if the stored body matches. */
  unless?: UpdateGuard;
}

export interface Store {
  /** `sqlite` or `postgres`. */
  readonly dialect: string;
  /** Applies pending migrations (idempotent; safe to call from several processes). */
  migrate(): Promise<void>;
  close(): Promise<void>;

  // ---- accounts and API keys ----
  /** Creates the account if it does not exist (idempotent). */
  ensureAccount(account: string, displayName?: string): Promise<void>;
  accountExists(account: string): Promise<boolean>;
  /** The account's row, or undefined when it does not exist. */
  getAccount(account: string): Promise<AccountRecord | undefined>;
  /**
   * Issues a new key for the account. The secret (`tmp_` + 32 random bytes, base64url) is
   * returned once; only its SHA-256 is stored. `not_found` if the account does not exist.
   */
  createApiKey(
    account: string,
    displayName?: string,
  ): Promise<{ key: ApiKeyRecord; secret: string }>;
  /** The key's record when the secret is valid, else undefined. */
  resolveApiKey(secret: string): Promise<ApiKeyRecord | undefined>;
  listApiKeys(account: string): Promise<ApiKeyRecord[]>;
  deleteApiKey(account: string, keyId: string): Promise<boolean>;

  // ---- resources ----
  /**
   * Inserts a new resource at version 1; `already_exists` if the name is taken,
   * `invalid_argument` for an id or account outside the id rule (DESIGN.md) or a body JSON
   * cannot hold. The account row is not required (API keys are what need an account).
   */
  create<T>(collection: Collection, account: string, id: string, body: T): Promise<ResourceRow<T>>;
  get<T>(collection: Collection, account: string, id: string): Promise<ResourceRow<T> | undefined>;
  list<T>(collection: Collection, account: string, options?: ListOptions): Promise<Page<T>>;
  /**
   * Read-modify-write in one transaction: `mutate` gets the current body and returns the new
   * one. `not_found` if absent; with `expectVersion`, `conflict` if the row moved on.
   * With `unless`, `failed_precondition` if the stored body matches the guard (nothing changes).
   * `mutate` must be synchronous (it runs inside the transaction); if it throws, nothing
   * changes and the error propagates.
   */
  update<T>(
    collection: Collection,
    account: string,
    id: string,
    mutate: (body: T) => T,
    options?: UpdateOptions,
  ): Promise<ResourceRow<T>>;
  /** True when a row was deleted. Also deletes the resource's metrics. */
  delete(collection: Collection, account: string, id: string): Promise<boolean>;
  /**
   * How many rows of the collection, over every account, hold each value of the body's
   * top-level `field` (a row without it counts under ''), for aggregate gauges such as jobs by
   * state (/metrics). `invalid_argument` for a field name outside [A-Za-z_][A-Za-z0-9_]*.
   */
  countBy(collection: Collection, field: string): Promise<Array<{ value: string; count: number }>>;

  // ---- secrets at rest (see secrets-key.ts) ----
  /**
   * Re-wraps the data key of every sealed value (secrets' values, trainer jobs' pod tokens)
   * with `next` in one transaction (all or none); the store's own key must open them. Resolves
   * with how many values were re-wrapped. Afterwards only `next` opens them: start temper
   * with it.
   */
  rewrapSecrets(next: SecretsKey): Promise<number>;

  // ---- per-job metrics (append-only, keyed by resource name and step) ----
  /** Appends rows; a row for an existing (name, step) replaces it (a resumed job re-reports). */
  putMetrics(name: string, rows: MetricRow[]): Promise<void>;
  /** Rows in step order. */
  listMetrics(name: string, options?: { afterStep?: number; limit?: number }): Promise<MetricRow[]>;

  // ---- usage metering (billing export) ----
  /**
   * Appends usage events in one transaction: all or none. An event whose id is stored
   * already is skipped (first write wins). `invalid_argument` for a malformed event.
   */
  recordUsage(events: UsageEvent[]): Promise<void>;
  /** The account's events whose startTime is in [range.startTime, range.endTime), oldest first. */
  listUsage(account: string, range: TimeRange): Promise<UsageEvent[]>;

  // ---- deployments (the deployment registry's rows, src/deployments/registry.ts) ----
  /** Inserts or replaces the deployment's row (its spec is opaque JSON). */
  putDeployment(record: DeploymentRow): Promise<void>;
  /** True when a row was deleted. */
  deleteDeployment(name: string): Promise<boolean>;
  /** Every account's deployments, oldest first. */
  listDeployments(): Promise<DeploymentRow[]>;
}

/** A deployment the control plane runs: `accounts/{account}/deployments/{id}` and its spec. */
export interface DeploymentRow {
  name: string;
  account: string;
  spec: unknown;
}

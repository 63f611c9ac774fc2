/**
 * What both store implementations share: argument checks, times, page tokens, API-key
 * secrets and body encoding. Keeping these here is what makes the two dialects behave the
 * same (the store suite runs against both).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  type AccountRecord,
  type ApiKeyRecord,
  COLLECTIONS,
  type Collection,
  GuardRefusedError,
  type MetricRow,
  type ResourceRow,
  StoreError,
  type TimeRange,
  type UpdateOptions,
  type UsageEvent,
} from './types.js';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

/** Ids and account ids: 1-63 of a-z0-9-, starting with a letter, not ending with a hyphen. */
const ID_PATTERN = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function isValidId(id: string): boolean {
  return ID_PATTERN.test(id);
}

export function checkId(kind: string, id: string): void {
  if (!isValidId(id))
    throw new StoreError(
      'invalid_argument',
      `invalid ${kind} "${id}": use 1-63 characters of a-z, 0-9 and "-", starting with a letter and not ending with "-"`,
    );
}

/** A deployment row's name must be its account's `accounts/{account}/deployments/{id}`. */
export function checkDeploymentRow(record: { name: string; account: string }): void {
  checkId('account', record.account);
  const prefix = `accounts/${record.account}/deployments/`;
  const id = record.name.startsWith(prefix) ? record.name.slice(prefix.length) : '';
  if (!isValidId(id))
    throw new StoreError(
      'invalid_argument',
      `invalid deployment name "${record.name}": expected ${prefix}{id} with a valid id`,
    );
}

/** Collections are a closed set; a JavaScript caller could still pass anything. */
/** A body field name a query may name (it becomes part of a JSON path). */
export function checkFieldName(field: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(field))
    throw new StoreError(
      'invalid_argument',
      `field name ${JSON.stringify(field)} is not an identifier`,
    );
}

export function checkCollection(collection: string): asserts collection is Collection {
  if (!(COLLECTIONS as readonly string[]).includes(collection))
    throw new StoreError(
      'invalid_argument',
      `unknown collection "${collection}" (known: ${COLLECTIONS.join(', ')})`,
    );
}

export function resourceName(collection: Collection, account: string, id: string): string {
  return `accounts/${account}/${collection}/${id}`;
}

/** RFC 3339, milliseconds, UTC: the precision both dialects keep exactly. */
export function now(): string {
  return new Date().toISOString();
}

export function checkPageSize(pageSize: number | undefined): number {
  const size = pageSize ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE)
    throw new StoreError(
      'invalid_argument',
      `pageSize must be an integer from 1 to ${MAX_PAGE_SIZE}, got ${pageSize}`,
    );
  return size;
}

/** The position after which the next page starts: the last row's (create time, id). */
export interface Cursor {
  createTime: string;
  id: string;
}

export function encodePageToken(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.createTime, cursor.id])).toString('base64url');
}

export function decodePageToken(token: string | undefined): Cursor | undefined {
  if (token === undefined || token === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 2 ||
    typeof parsed[0] !== 'string' ||
    Number.isNaN(Date.parse(parsed[0])) ||
    typeof parsed[1] !== 'string'
  )
    throw new StoreError('invalid_argument', 'invalid pageToken: pass a nextPageToken unchanged');
  return { createTime: parsed[0], id: parsed[1] };
}

/**
 * Builds a page from up to pageSize + 1 rows read after the cursor: the extra row only tells
 * that another page exists.
 */
export function toPage<T>(
  rows: ResourceRow<T>[],
  pageSize: number,
): { items: ResourceRow<T>[]; nextPageToken?: string } {
  const items = rows.slice(0, pageSize);
  const last = items[items.length - 1];
  if (rows.length <= pageSize || last === undefined) return { items };
  return { items, nextPageToken: encodePageToken({ createTime: last.createTime, id: last.id }) };
}

/**
 * JSON text for a body or metric values. Rejects what PostgreSQL's JSONB cannot hold (NUL
 * characters, unpaired surrogates) in both dialects, so a body that works on SQLite never
 * fails later on PostgreSQL.
 */
export function encodeJson(value: unknown, what: string): string {
  if (isThenable(value))
    throw new StoreError(
      'invalid_argument',
      `${what} is a Promise: the function must be synchronous`,
    );
  const text = JSON.stringify(value);
  if (text === undefined)
    throw new StoreError(
      'invalid_argument',
      `${what} is not JSON-serialisable (got ${typeof value})`,
    );
  // JSON.stringify writes NUL as \u0000 and a lone surrogate as \udXXX; an even run of
  // backslashes before it means the backslash itself was escaped, i.e. plain text.
  if (/(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/i.test(text))
    throw new StoreError(
      'invalid_argument',
      `${what} contains a NUL character or an unpaired UTF-16 surrogate, which cannot be stored`,
    );
  return text;
}

function isThenable(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

// ---- API keys ----

const SECRET_PREFIX = 'tmp_';

/** A new key: its public id, the secret handed out once, and the hash that is stored. */
export function newApiKey(): { keyId: string; secret: string; secretSha256: string } {
  const secret = SECRET_PREFIX + randomBytes(32).toString('base64url');
  return { keyId: `key-${randomBytes(8).toString('hex')}`, secret, secretSha256: sha256(secret) };
}

/**
 * The stored form of a presented secret, or undefined when it cannot be one of ours.
 *
 * Lookup is by this hash through a unique index, so no secret is ever compared with a
 * secret and a constant-time comparison buys nothing: the timing of the index lookup can at
 * most reveal how far the SHA-256 of the attacker's own guess matches a stored hash, and
 * learning hash prefixes does not help to find a preimage of a 256-bit random secret.
 */
export function apiKeyLookupHash(secret: string): string | undefined {
  if (!secret.startsWith(SECRET_PREFIX) || secret.length > 128) return undefined;
  return sha256(secret);
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export function apiKeyRecord(row: {
  key_id: string;
  account: string;
  display_name: string;
  create_time: string | Date;
}): ApiKeyRecord {
  return {
    keyId: row.key_id,
    account: row.account,
    displayName: row.display_name,
    createTime: isoTime(row.create_time),
  };
}

// ---- rows ----

/** A resource row as either driver returns it (SQLite: text; PostgreSQL: parsed JSONB, Dates). */
export interface RawResource {
  account: string;
  collection: string;
  id: string;
  body: unknown;
  version: number | string;
  create_time: string | Date;
  update_time: string | Date;
}

export function resourceRow<T>(raw: RawResource): ResourceRow<T> {
  const collection = raw.collection as Collection;
  return {
    account: raw.account,
    collection,
    id: raw.id,
    name: resourceName(collection, raw.account, raw.id),
    body: (typeof raw.body === 'string' ? JSON.parse(raw.body) : raw.body) as T,
    version: Number(raw.version),
    createTime: isoTime(raw.create_time),
    updateTime: isoTime(raw.update_time),
  };
}

export function isoTime(value: string | Date): string {
  return typeof value === 'string' ? value : value.toISOString();
}

export interface RawMetric {
  step: number | string;
  metric_values: unknown;
  time: string | Date;
}

export function metricRow(raw: RawMetric): MetricRow {
  const values =
    typeof raw.metric_values === 'string' ? JSON.parse(raw.metric_values) : raw.metric_values;
  return { step: Number(raw.step), values: values as MetricRow['values'], time: isoTime(raw.time) };
}

/** Checked, normalised metric rows; a step reported twice in one call keeps its last row. */
export function prepareMetrics(
  name: string,
  rows: MetricRow[],
): { step: number; valuesJson: string; time: string }[] {
  if (name === '') throw new StoreError('invalid_argument', 'metrics need a resource name');
  const byStep = new Map<number, { step: number; valuesJson: string; time: string }>();
  for (const row of rows) {
    if (!Number.isSafeInteger(row.step) || row.step < 0)
      throw new StoreError(
        'invalid_argument',
        `metric step must be an integer >= 0, got ${row.step}`,
      );
    const ms = Date.parse(row.time);
    if (Number.isNaN(ms))
      throw new StoreError('invalid_argument', `metric time "${row.time}" is not an RFC 3339 time`);
    byStep.set(row.step, {
      step: row.step,
      valuesJson: encodeJson(row.values, `metric values of step ${row.step}`),
      time: new Date(ms).toISOString(),
    });
  }
  return [...byStep.values()];
}

export function checkMetricQuery(options: { afterStep?: number; limit?: number } = {}): {
  afterStep: number;
  limit: number | undefined;
} {
  const { afterStep, limit } = options;
  if (afterStep !== undefined && !Number.isSafeInteger(afterStep))
    throw new StoreError('invalid_argument', `afterStep must be an integer, got ${afterStep}`);
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1))
    throw new StoreError('invalid_argument', `limit must be a positive integer, got ${limit}`);
  return { afterStep: afterStep ?? -1, limit };
}

export function conflictError(name: string, expected: number, actual: number): StoreError {
  return new StoreError(
    'conflict',
    `${name} is at version ${actual}, not ${expected}: read it again and retry`,
  );
}

/**
 * The checks of a conditional update, in the order both dialects apply them inside their
 * transaction: the version first (the caller's read is stale), then the guard.
 */
export function checkUpdate(
  name: string,
  current: { version: number; body: unknown },
  options: UpdateOptions,
): void {
  const { expectVersion, unless } = options;
  if (expectVersion !== undefined && current.version !== expectVersion)
    throw conflictError(name, expectVersion, current.version);
  if (unless === undefined) return;
  const value =
    typeof current.body === 'object' && current.body !== null
      ? (current.body as Record<string, unknown>)[unless.field]
      : undefined;
  if (typeof value === 'string' && unless.values.includes(value))
    throw new GuardRefusedError(
      `${name} is ${value}, which this update must not overwrite (its ${unless.field} is one of ${unless.values.join(', ')})`,
    );
}

export function notFound(name: string): StoreError {
  return new StoreError('not_found', `${name} not found`);
}

export function alreadyExists(name: string): StoreError {
  return new StoreError('already_exists', `${name} already exists`);
}

export function accountRecord(row: {
  account: string;
  display_name: string;
  create_time: string | Date;
}): AccountRecord {
  return {
    account: row.account,
    displayName: row.display_name,
    createTime: isoTime(row.create_time),
  };
}

// ---- usage events ----

/** A usage event as one row of `usage_events`: column order of USAGE_COLUMNS, NULL for absent. */
export type UsageValues = [
  id: string,
  account: string,
  startTime: string,
  endTime: string,
  usageType: string,
  acceleratorType: string | null,
  acceleratorSeconds: number | null,
  baseModelName: string | null,
  modelBucket: string | null,
  parameterCount: number | null,
  promptTokens: number | null,
  completionTokens: number | null,
  source: string | null,
];

export const USAGE_COLUMNS =
  'id, account, start_time, end_time, usage_type, accelerator_type, accelerator_seconds, ' +
  'base_model_name, model_bucket, parameter_count, prompt_tokens, completion_tokens, source';

const USAGE_TYPE_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/;
const MAX_USAGE_TEXT = 1024;

/**
 * A usage time as stored: RFC 3339 with milliseconds, UTC. Years are kept to 0001-9999 so
 * the text form sorts like the instant it names (SQLite compares the text).
 */
export function usageTime(value: unknown, what: string): string {
  const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
  const iso = Number.isNaN(ms) ? '' : new Date(ms).toISOString();
  if (!/^\d{4}-/.test(iso) || iso.startsWith('0000'))
    throw new StoreError('invalid_argument', `${what} "${String(value)}" is not an RFC 3339 time`);
  return iso;
}

export function usageRange(range: TimeRange): TimeRange {
  return {
    startTime: usageTime(range?.startTime, 'range startTime'),
    endTime: usageTime(range?.endTime, 'range endTime'),
  };
}

function usageText(value: unknown, what: string, max = MAX_USAGE_TEXT): string | null {
  if (value === undefined || value === null) return null;
  // PostgreSQL text cannot hold NUL; refused in both dialects so they agree.
  if (typeof value !== 'string' || value === '' || value.length > max || value.includes('\0'))
    throw new StoreError(
      'invalid_argument',
      `usage ${what} must be a non-empty string of at most ${max} characters without NUL`,
    );
  return value;
}

function usageCount(value: unknown, what: string): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new StoreError(
      'invalid_argument',
      `usage ${what} must be an integer >= 0, got ${String(value)}`,
    );
  return value;
}

function usageSeconds(value: unknown): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new StoreError(
      'invalid_argument',
      `usage acceleratorSeconds must be a finite number >= 0, got ${String(value)}`,
    );
  return value;
}

function usageValues(event: UsageEvent): UsageValues {
  const id = usageText(event.id, 'id', 256);
  if (id === null) throw new StoreError('invalid_argument', 'a usage event needs an id');
  checkId('account', event.account);
  if (typeof event.usageType !== 'string' || !USAGE_TYPE_PATTERN.test(event.usageType))
    throw new StoreError(
      'invalid_argument',
      `usage type "${String(event.usageType)}" must be UPPER_SNAKE_CASE (e.g. FINE_TUNING_USAGE)`,
    );
  const startTime = usageTime(event.startTime, `usage ${id} startTime`);
  const endTime = usageTime(event.endTime, `usage ${id} endTime`);
  if (endTime < startTime)
    throw new StoreError(
      'invalid_argument',
      `usage ${id} ends (${endTime}) before it starts (${startTime})`,
    );
  return [
    id,
    event.account,
    startTime,
    endTime,
    event.usageType,
    usageText(event.acceleratorType, 'acceleratorType'),
    usageSeconds(event.acceleratorSeconds),
    usageText(event.baseModelName, 'baseModelName'),
    usageText(event.modelBucket, 'modelBucket'),
    usageCount(event.parameterCount, 'parameterCount'),
    usageCount(event.promptTokens, 'promptTokens'),
    usageCount(event.completionTokens, 'completionTokens'),
    usageText(event.source, 'source'),
  ];
}

/**
 * Checked rows for recordUsage. Every event is checked before anything is written (a batch
 * is all or none); an id given twice keeps its first event, as a stored id does.
 */
export function prepareUsage(events: UsageEvent[]): UsageValues[] {
  if (!Array.isArray(events))
    throw new StoreError('invalid_argument', 'recordUsage takes an array of usage events');
  const byId = new Map<string, UsageValues>();
  for (const event of events) {
    const values = usageValues(event);
    if (!byId.has(values[0])) byId.set(values[0], values);
  }
  return [...byId.values()];
}

/** A usage row as either driver returns it (PostgreSQL: Dates, bigint as text). */
export interface RawUsage {
  id: string;
  account: string;
  start_time: string | Date;
  end_time: string | Date;
  usage_type: string;
  accelerator_type: string | null;
  accelerator_seconds: number | string | null;
  base_model_name: string | null;
  model_bucket: string | null;
  parameter_count: number | string | null;
  prompt_tokens: number | string | null;
  completion_tokens: number | string | null;
  source: string | null;
}

export function usageEventRow(raw: RawUsage): UsageEvent {
  const event: UsageEvent = {
    id: raw.id,
    account: raw.account,
    startTime: isoTime(raw.start_time),
    endTime: isoTime(raw.end_time),
    usageType: raw.usage_type,
  };
  // Absent fields stay absent (not undefined-valued keys), so rows compare and print cleanly.
  const optional = {
    acceleratorType: raw.accelerator_type,
    acceleratorSeconds: raw.accelerator_seconds === null ? null : Number(raw.accelerator_seconds),
    baseModelName: raw.base_model_name,
    modelBucket: raw.model_bucket,
    parameterCount: raw.parameter_count === null ? null : Number(raw.parameter_count),
    promptTokens: raw.prompt_tokens === null ? null : Number(raw.prompt_tokens),
    completionTokens: raw.completion_tokens === null ? null : Number(raw.completion_tokens),
    source: raw.source,
  };
  for (const [key, value] of Object.entries(optional))
    if (value !== null) Object.assign(event, { [key]: value });
  return event;
}

/**
 * Where the store applies the secrets key: the fields below are sealed on every write and
 * opened on every read, so the REST layer, the gateway and the evaluators see plain bodies
 * while the database holds only ciphertext. Both dialects call these, which keeps the rule in
 * one place.
 *
 * Sealed fields, one per collection:
 * - a secret's `value` (what evaluators read as environment variables);
 * - an rlorTrainerJob's `trainerToken`, the credential of its pod: the gateway presents it on
 *   every call it forwards and the job's account reads it to reach the pod directly, so the
 *   platform needs the clear token back (a hash would not do), and it must not rest in clear.
 */
import { type SealedValue, type SecretsKey, sealedValueSchema } from './secrets-key.js';
import { type Collection, type ResourceRow, StoreError } from './types.js';

interface SealedField {
  /** The field callers read and write. */
  plain: string;
  /** The field the database holds in its place. */
  sealed: string;
  /** What it is, in error messages ("store the trainer token of ..."). */
  what: string;
}

const SEALED_FIELDS: Partial<Record<Collection, SealedField>> = {
  secrets: { plain: 'value', sealed: 'sealedValue', what: 'the secret' },
  rlorTrainerJobs: {
    plain: 'trainerToken',
    sealed: 'sealedTrainerToken',
    what: 'the trainer token of',
  },
};

/**
 * SQL condition on the `resources` table selecting the rows that hold a sealed field, or its
 * plain form (rows the start-up sweep seals and rotation re-wraps). Built from the fixed
 * table above, never from input.
 */
export function sealedRowsCondition(dialect: 'sqlite' | 'postgres'): string {
  const holds = (f: SealedField) =>
    dialect === 'sqlite'
      ? `(json_type(body, '$.${f.sealed}') IS NOT NULL OR json_type(body, '$.${f.plain}') = 'text')`
      : `(body ? '${f.sealed}' OR jsonb_typeof(body -> '${f.plain}') = 'string')`;
  const each = Object.entries(SEALED_FIELDS).map(
    ([collection, f]) => `(collection = '${collection}' AND ${holds(f!)})`,
  );
  return `(${each.join(' OR ')})`;
}

type Body = Record<string, unknown>;

const isBody = (body: unknown): body is Body =>
  typeof body === 'object' && body !== null && !Array.isArray(body);

function noKey(name: string, what: string): StoreError {
  return new StoreError(
    'failed_precondition',
    `cannot ${what} ${name}: this temper has no secrets key (set TEMPER_SECRETS_KEY or --secrets-key-file; temper up makes one under its data directory)`,
  );
}

function sealedOf(body: Body, field: SealedField, name: string): SealedValue {
  const parsed = sealedValueSchema.safeParse(body[field.sealed]);
  if (!parsed.success)
    throw new StoreError('failed_precondition', `the sealed value of ${name} is malformed`);
  return parsed.data;
}

/**
 * The body as it is stored: its sealed field sealed under the key. A body that sets the
 * field to anything but a string (null: the token is withdrawn) keeps no sealed form.
 */
export function sealBody(
  key: SecretsKey | undefined,
  collection: Collection,
  name: string,
  body: unknown,
): unknown {
  const field = SEALED_FIELDS[collection];
  if (!field || !isBody(body) || !(field.plain in body)) return body;
  const { [field.plain]: value, [field.sealed]: _, ...rest } = body;
  if (typeof value !== 'string') return { ...rest, [field.plain]: value };
  if (!key) throw noKey(name, `store ${field.what}`);
  return { ...rest, [field.sealed]: key.seal(value, name) };
}

/** The body as callers see it: its sealed field opened. */
export function openBody(
  key: SecretsKey | undefined,
  collection: Collection,
  name: string,
  body: unknown,
): unknown {
  const field = SEALED_FIELDS[collection];
  if (!field || !isBody(body) || !(field.sealed in body)) return body;
  if (!key) throw noKey(name, `read ${field.what}`);
  const { [field.sealed]: _, ...rest } = body;
  return { ...rest, [field.plain]: key.open(sealedOf(body, field, name), name) };
}

/**
 * What a stored body needs at start-up: `seal` (a plain value written before the field was
 * sealed), `ok` (nothing sealed, or sealed under this key and opens), or an error saying why
 * not.
 */
export function checkStoredBody(
  key: SecretsKey | undefined,
  collection: Collection,
  name: string,
  body: unknown,
): 'ok' | 'seal' {
  const field = SEALED_FIELDS[collection];
  if (!field || !isBody(body)) return 'ok';
  if (field.sealed in body) {
    if (!key) throw noKey(name, `open ${field.what}`);
    key.open(sealedOf(body, field, name), name);
    return 'ok';
  }
  return typeof body[field.plain] === 'string' && key ? 'seal' : 'ok';
}

/** The stored body with its data key wrapped by `next` (the value's ciphertext unchanged). */
export function rewrapBody(
  key: SecretsKey,
  next: SecretsKey,
  collection: Collection,
  name: string,
  body: unknown,
): unknown {
  const field = SEALED_FIELDS[collection];
  if (!field || !isBody(body)) return body;
  if (!(field.sealed in body)) return sealBody(next, collection, name, body);
  return { ...body, [field.sealed]: key.rewrap(sealedOf(body, field, name), name, next) };
}

/** A row as callers see it (see openBody). */
export function openRow<T>(key: SecretsKey | undefined, row: ResourceRow<T>): ResourceRow<T> {
  if (!SEALED_FIELDS[row.collection]) return row;
  return { ...row, body: openBody(key, row.collection, row.name, row.body) as T };
}

/**
 * Where the store applies the secrets key: the `value` of a `secrets` row is sealed on every
 * write and opened on every read, so the REST layer and the evaluators see plain bodies while
 * the database file holds only ciphertext. Both dialects call these, which keeps the rule in
 * one place.
 */
import { type SealedValue, type SecretsKey, sealedValueSchema } from './secrets-key.js';
import { type Collection, type ResourceRow, StoreError } from './types.js';

const SECRETS: Collection = 'secrets';
const PLAIN = 'value';
const SEALED = 'sealedValue';

type Body = Record<string, unknown>;

const isBody = (body: unknown): body is Body =>
  typeof body === 'object' && body !== null && !Array.isArray(body);

function noKey(name: string, what: string): StoreError {
  return new StoreError(
    'failed_precondition',
    `cannot ${what} ${name}: this temper has no secrets key (set TEMPER_SECRETS_KEY or --secrets-key-file; temper up makes one under its data directory)`,
  );
}

function sealedOf(body: Body, name: string): SealedValue {
  const parsed = sealedValueSchema.safeParse(body[SEALED]);
  if (!parsed.success)
    throw new StoreError('failed_precondition', `the sealed value of ${name} is malformed`);
  return parsed.data;
}

/** The body as it is stored: a secret's value sealed under the key. */
export function sealBody(
  key: SecretsKey | undefined,
  collection: Collection,
  name: string,
  body: unknown,
): unknown {
  if (collection !== SECRETS || !isBody(body) || typeof body[PLAIN] !== 'string') return body;
  if (!key) throw noKey(name, 'store the secret');
  const { [PLAIN]: value, ...rest } = body;
  return { ...rest, [SEALED]: key.seal(value as string, name) };
}

/** The body as callers see it: a secret's value opened. */
export function openBody(
  key: SecretsKey | undefined,
  collection: Collection,
  name: string,
  body: unknown,
): unknown {
  if (collection !== SECRETS || !isBody(body) || !(SEALED in body)) return body;
  if (!key) throw noKey(name, 'read the secret');
  const { [SEALED]: _, ...rest } = body;
  return { ...rest, [PLAIN]: key.open(sealedOf(body, name), name) };
}

/**
 * What a stored secret body needs at start-up: `seal` (a plain value written before secrets
 * were encrypted), `ok` (sealed under this key and opens), or an error saying why not.
 */
export function checkStoredSecret(
  key: SecretsKey | undefined,
  name: string,
  body: unknown,
): 'ok' | 'seal' {
  if (!isBody(body)) return 'ok';
  if (SEALED in body) {
    if (!key) throw noKey(name, 'open');
    key.open(sealedOf(body, name), name);
    return 'ok';
  }
  return typeof body[PLAIN] === 'string' && key ? 'seal' : 'ok';
}

/** The stored body with its data key wrapped by `next` (the value's ciphertext unchanged). */
export function rewrapBody(
  key: SecretsKey,
  next: SecretsKey,
  name: string,
  body: unknown,
): unknown {
  if (!isBody(body) || !(SEALED in body)) return sealBody(next, SECRETS, name, body);
  return { ...body, [SEALED]: key.rewrap(sealedOf(body, name), name, next) };
}

/** A row as callers see it (see openBody). */
export function openRow<T>(key: SecretsKey | undefined, row: ResourceRow<T>): ResourceRow<T> {
  if (row.collection !== SECRETS) return row;
  return { ...row, body: openBody(key, row.collection, row.name, row.body) as T };
}

/**
 * Resource ids and names. Ids follow the one rule of the platform (1-63 of a-z0-9-, starting
 * with a letter, not ending with '-'; the same regex the checkpoint catalog uses); names are
 * `accounts/{account}/{collection}/{id}`. References in request bodies may be a bare id (the
 * caller's own account) or a full name.
 */
import { randomBytes } from 'node:crypto';
import { RESOURCE_ID } from '../../checkpoints/catalog/catalog.js';
import { invalid } from './errors.js';

export const ID_RULE =
  'use 1-63 characters of a-z, 0-9 and "-", starting with a letter and not ending with "-"';

export function isValidId(id: string): boolean {
  return RESOURCE_ID.test(id);
}

export function checkId(id: string, what: string): string {
  if (!isValidId(id)) throw invalid(`${what} '${id}' is not a valid id: ${ID_RULE}`);
  return id;
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A random id: a letter then 11 of a-z0-9 (~57 bits), unique in practice. */
export function randomId(): string {
  const bytes = randomBytes(12);
  let id = ALPHABET[bytes[0]! % 26]!;
  for (let i = 1; i < 12; i++) id += ALPHABET[bytes[i]! % 36]!;
  return id;
}

export function resourceName(account: string, collection: string, id: string): string {
  return `accounts/${account}/${collection}/${id}`;
}

export interface NameRef {
  account: string;
  id: string;
  name: string;
}

/**
 * Parses a reference to a resource of `collection`: a bare id means the caller's account.
 * Throws INVALID_ARGUMENT naming `field` when it is neither.
 */
export function parseRef(
  value: string,
  collection: string,
  ownAccount: string,
  field: string,
): NameRef {
  const parts = value.split('/');
  if (parts.length === 1 && isValidId(value))
    return { account: ownAccount, id: value, name: resourceName(ownAccount, collection, value) };
  const [a, account, c, id] = parts;
  if (
    parts.length === 4 &&
    a === 'accounts' &&
    c === collection &&
    account !== undefined &&
    id !== undefined &&
    isValidId(account) &&
    isValidId(id)
  )
    return { account, id, name: value };
  throw invalid(
    `${field}: '${value}' is not a ${collection} reference: give an id or accounts/{account}/${collection}/{id}`,
  );
}

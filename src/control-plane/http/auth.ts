/**
 * API keys and account scoping. A key belongs to one account and sees only that account:
 * any other account answers NOT_FOUND with the same words a missing resource of one's own
 * would get, so the existence of other accounts and their resources does not leak. The
 * public catalog account `temper` is readable by every key and writable by none.
 */
import type { FastifyRequest } from 'fastify';
import { CATALOG_ACCOUNT } from '../../catalog/bundled.js';
import type { Store } from '../../store/index.js';
import { ApiError, notFound } from './errors.js';

export interface Principal {
  keyId: string;
  account: string;
}

export type Access = 'read' | 'write';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/**
 * The key a request presents: `X-Api-Key: <key>` (header names are case-insensitive; the
 * Fireworks SDK sends only this one on REST calls) or `Authorization: Bearer <key>` (the
 * plain REST clients). When both are present they must agree, so a request never runs as a
 * key other than the one it seems to carry.
 */
function presentedKey(req: FastifyRequest): string {
  const raw = req.headers['x-api-key'];
  const xApiKey = (Array.isArray(raw) ? raw[0] : raw)?.trim();
  const header = req.headers.authorization;
  const bearer = header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
  if (header && !bearer && !xApiKey)
    throw new ApiError('UNAUTHENTICATED', 'the Authorization header must be "Bearer <key>"');
  if (xApiKey && bearer && xApiKey !== bearer)
    throw new ApiError(
      'UNAUTHENTICATED',
      'X-Api-Key and Authorization: Bearer carry different keys: send one key',
    );
  const key = xApiKey || bearer;
  if (!key)
    throw new ApiError(
      'UNAUTHENTICATED',
      'missing API key: send the header "X-Api-Key: <key>" or "Authorization: Bearer <key>"',
    );
  return key;
}

/**
 * Tinker clients refuse keys that do not start with `tml-`, so where they talk (the trainer
 * gateway) `tml-<temper key>` stands for `<temper key>`. Temper's own keys start with
 * `tmp_` (store/common.ts), never with `tml-` or `eyJ`, which those clients read as a Tinker
 * key or a JWT.
 */
export const TINKER_KEY_PREFIX = 'tml-';

export interface AuthOptions {
  /** Accept `tml-<key>` as `<key>` (the Tinker-wire trainer gateway). */
  tinkerPrefix?: boolean;
}

/** Resolves the presented API key to its account; UNAUTHENTICATED otherwise. */
export async function authenticate(
  store: Store,
  req: FastifyRequest,
  opts: AuthOptions = {},
): Promise<Principal> {
  let secret = presentedKey(req);
  if (opts.tinkerPrefix && secret.startsWith(TINKER_KEY_PREFIX))
    secret = secret.slice(TINKER_KEY_PREFIX.length);
  const key = await store.resolveApiKey(secret);
  if (!key) throw new ApiError('UNAUTHENTICATED', 'invalid API key');
  return { keyId: key.keyId, account: key.account };
}

export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new ApiError('UNAUTHENTICATED', 'request is not authenticated');
  return req.principal;
}

/**
 * May `principal` touch `name` (a resource or collection under `accounts/{account}`)?
 * `name` is what the NOT_FOUND message names.
 */
export function authorize(principal: Principal, account: string, access: Access, name: string) {
  if (account === CATALOG_ACCOUNT) {
    if (access === 'write')
      throw new ApiError(
        'PERMISSION_DENIED',
        `accounts/${CATALOG_ACCOUNT} is the public read-only catalog: create resources under accounts/${principal.account}`,
      );
    return;
  }
  if (account !== principal.account) throw notFound(`${name} not found`);
}

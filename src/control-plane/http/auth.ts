/**
 * API keys and account scoping. A key belongs to one account and sees only that account:
 * any other account answers NOT_FOUND with the same words a missing resource of one's own
 * would get, so the existence of other accounts and their resources does not leak. The
 * public catalog account `temper` is readable by every key and writable by none.
 */
import type { FastifyRequest } from 'fastify';
import { CATALOG_ACCOUNT } from '../../catalog/bundled.js';
import type { Store } from '../store/types.js';
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

/** Resolves `Authorization: Bearer <key>` to its account; UNAUTHENTICATED otherwise. */
export async function authenticate(store: Store, req: FastifyRequest): Promise<Principal> {
  const header = req.headers.authorization;
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!match?.[1])
    throw new ApiError(
      'UNAUTHENTICATED',
      'missing API key: send the header "Authorization: Bearer <key>"',
    );
  const key = await store.resolveApiKey(match[1]);
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

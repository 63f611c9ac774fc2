/**
 * `GET /v1/accounts` and `GET /v1/accounts/{a}`: the account an API key belongs to (a key
 * sees exactly one). Lets a client that holds only a key find its account — the CLI asks
 * when `--account` is not given.
 */
import type { FastifyInstance } from 'fastify';
import type { Deps } from '../context.js';
import { authorize, principalOf } from '../http/auth.js';
import { notFound } from '../http/errors.js';

async function account(deps: Deps, id: string) {
  const record = await deps.store.getAccount(id);
  if (!record) throw notFound(`accounts/${id} not found`);
  return {
    name: `accounts/${record.account}`,
    displayName: record.displayName,
    createTime: record.createTime,
  };
}

export function accountRoutes(app: FastifyInstance, deps: Deps): void {
  app.get('/v1/accounts', async (req) => ({
    accounts: [await account(deps, principalOf(req).account)],
    nextPageToken: '',
  }));
  app.get<{ Params: { account: string } }>('/v1/accounts/:account', async (req) => {
    const id = req.params.account;
    authorize(principalOf(req), id, 'read', `accounts/${id}`);
    return account(deps, id);
  });
}

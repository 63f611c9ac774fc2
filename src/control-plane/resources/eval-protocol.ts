/**
 * The routes outside `/v1/accounts/...` that eval-protocol's CLI and remote environments call
 * on the API origin (besides the collections):
 *
 * - `GET /verifyApiKey`: how `ep` finds its account: the key's account in the
 *   `x-fireworks-account-id` response header (it reads nothing else).
 * - `PUT /uploads/evaluators/...`: the signed URL an evaluator archive is uploaded to.
 * - `POST /logs`, `/v1/logs`: rollout log records from remote environments (rollout-logs.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { Deps } from '../context.js';
import { authenticate } from '../http/auth.js';
import { evaluatorUploadRoute } from './evaluators.js';
import { rolloutLogRoutes } from './rollout-logs.js';

export function evalProtocolRoutes(app: FastifyInstance, deps: Deps): void {
  app.get('/verifyApiKey', async (req, reply) => {
    const principal = await authenticate(deps.store, req);
    reply.header('x-fireworks-account-id', principal.account);
    return { account: `accounts/${principal.account}` };
  });
  evaluatorUploadRoute(app, deps);
  rolloutLogRoutes(app, deps);
}

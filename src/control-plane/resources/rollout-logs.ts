/**
 * The receiving end of eval-protocol's tracing contract: a remote environment's
 * `FireworksTracingHttpHandler` POSTs every log record of a rollout to
 * `{FW_TRACING_GATEWAY_BASE_URL}/logs` (then `/v1/logs`) with the account's key as Bearer:
 *
 *   {program, status: {code, message, details} | null, message, tags: ["rollout_id:<id>", ...], extras}
 *
 * A record whose status code is terminal (eval-protocol's Status.Code: 100 FINISHED, or an
 * error code) ends the rollout. Records are kept under the key's own account, per rollout id
 * (`rolloutLogPrefix`), where the worker that runs the rollout looks for them; records with a
 * status are named so the worker reads only those. Another account's key writes under its
 * own account, so it can neither end nor read a rollout that is not its own.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { rolloutLogPrefix, rolloutLogRecordSchema } from '../../store/rollout-logs.js';
import type { Deps } from '../context.js';
import { authenticate } from '../http/auth.js';
import { parseBody } from '../http/body.js';
import { invalid } from '../http/errors.js';

const ROLLOUT_ID = /^[A-Za-z0-9._-]{1,200}$/;

export {
  isStatusRecordKey,
  type RolloutLogRecord,
  rolloutLogPrefix,
  rolloutLogRecordSchema,
} from '../../store/rollout-logs.js';

async function receive(deps: Deps, req: FastifyRequest) {
  const principal = req.principal ?? (await authenticate(deps.store, req));
  const record = parseBody(rolloutLogRecordSchema, req.body);
  const ids = [
    ...new Set(
      record.tags
        .filter((t) => t.startsWith('rollout_id:'))
        .map((t) => t.slice('rollout_id:'.length)),
    ),
  ];
  if (ids.length === 0)
    throw invalid(
      'tags: a log record needs a "rollout_id:<id>" tag (set it with RolloutIdFilter or EP_ROLLOUT_ID)',
    );
  for (const id of ids)
    if (!ROLLOUT_ID.test(id))
      throw invalid(
        `tags: rollout id '${id}' is not 1-200 characters of A-Z, a-z, 0-9, '.', '_', '-'`,
      );
  const kind = record.status ? 'status' : 'log';
  // Time-ordered names: the worker reads status records in the order they came.
  const name = `${kind}-${Date.now().toString().padStart(15, '0')}-${randomBytes(4).toString('hex')}.json`;
  const text = JSON.stringify({ ...record, receivedTime: new Date().toISOString() });
  for (const id of ids)
    await deps.artifacts.put(`${rolloutLogPrefix(principal.account, id)}${name}`, text);
  return {};
}

export function rolloutLogRoutes(app: FastifyInstance, deps: Deps): void {
  for (const path of ['/logs', '/v1/logs'])
    app.post(path, { bodyLimit: 1 << 20 }, (req) => receive(deps, req));
}

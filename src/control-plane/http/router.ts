/**
 * Routes of one collection under `/v1/accounts/{account}/{collection}`. Custom methods
 * (`{id}:upload`, `{id}:cancel`) share the item route: the path router cannot tell
 * `{id}:upload` from `{id}:cancel` by pattern, so the item segment is split on its first
 * ':' here and dispatched by verb. Every handler runs after the account check, so a
 * resource module never sees another account's request.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type Access, authorize, type Principal, principalOf } from './auth.js';
import { notFound } from './errors.js';
import { resourceName } from './ids.js';

export interface RequestCtx {
  req: FastifyRequest;
  reply: FastifyReply;
  /** The account in the path (already checked against the key). */
  account: string;
  principal: Principal;
}

export type ItemHandler = (ctx: RequestCtx, id: string) => Promise<unknown>;
export type SubHandler = (ctx: RequestCtx, params: Record<string, string>) => Promise<unknown>;

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

export interface Verb {
  method?: Method;
  /** Default: GET reads, every other method writes. */
  access?: Access;
  handler: ItemHandler;
}

export interface SubRoute {
  method: Method;
  /** Relative to the item, e.g. 'metrics' or 'checkpoints/:target'. */
  path: string;
  access?: Access;
  handler: SubHandler;
}

export interface CollectionRoutes {
  collection: string;
  list?: (ctx: RequestCtx) => Promise<unknown>;
  create?: (ctx: RequestCtx) => Promise<unknown>;
  get?: ItemHandler;
  patch?: ItemHandler;
  delete?: ItemHandler;
  verbs?: Record<string, Verb>;
  sub?: SubRoute[];
}

interface AccountParams {
  account: string;
  [key: string]: string;
}

const defaultAccess = (method: Method): Access => (method === 'GET' ? 'read' : 'write');

function context(req: FastifyRequest, reply: FastifyReply, access: Access, name: string) {
  const { account } = req.params as AccountParams;
  const principal = principalOf(req);
  authorize(principal, account, access, name);
  return { req, reply, account, principal } satisfies RequestCtx;
}

/** Splits `{id}:verb`; `verb` is '' for a plain item path. */
function splitTarget(target: string): { id: string; verb: string } {
  const colon = target.indexOf(':');
  return colon < 0
    ? { id: target, verb: '' }
    : { id: target.slice(0, colon), verb: target.slice(colon + 1) };
}

function itemDispatcher(spec: CollectionRoutes, method: Method) {
  const plain = { GET: spec.get, PATCH: spec.patch, DELETE: spec.delete, POST: undefined }[method];
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const { account, target } = req.params as AccountParams;
    const { id, verb } = splitTarget(target ?? '');
    const name = resourceName(account, spec.collection, id);
    const v = verb ? spec.verbs?.[verb] : undefined;
    const handler = verb ? ((v?.method ?? 'POST') === method ? v?.handler : undefined) : plain;
    // Authorize first: another account's paths answer 404 whatever the verb.
    const ctx = context(req, reply, v?.access ?? defaultAccess(method), name);
    if (!handler)
      throw notFound(
        verb
          ? `no method ${method} ':${verb}' on ${spec.collection}`
          : `no method ${method} on ${name}`,
      );
    return handler(ctx, id);
  };
}

export function registerCollection(app: FastifyInstance, spec: CollectionRoutes): void {
  const base = `/v1/accounts/:account/${spec.collection}`;
  const { list, create } = spec;
  if (list)
    app.get(base, (req, reply) =>
      list(context(req, reply, 'read', `accounts/${(req.params as AccountParams).account}`)),
    );
  if (create)
    app.post(base, (req, reply) =>
      create(context(req, reply, 'write', `accounts/${(req.params as AccountParams).account}`)),
    );
  const methods = new Set<Method>(['GET', 'POST', 'PATCH', 'DELETE']);
  for (const method of methods)
    app.route({ method, url: `${base}/:target`, handler: itemDispatcher(spec, method) });
  for (const sub of spec.sub ?? [])
    app.route({
      method: sub.method,
      url: `${base}/:id/${sub.path}`,
      handler: (req, reply) => {
        const params = req.params as AccountParams;
        const name = resourceName(params.account, spec.collection, params.id ?? '');
        return sub.handler(
          context(req, reply, sub.access ?? defaultAccess(sub.method), name),
          params,
        );
      },
    });
}

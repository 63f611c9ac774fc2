/**
 * `secrets`: create, get, list, update (PATCH), delete. A secret is `{keyName, value}`
 * (an environment variable an evaluator gets); `value` is write-only: no response ever
 * carries it, not even the create's. The store seals values at rest with the operator's
 * secrets key (src/store/secrets-key.ts); handlers here see them plain.
 *
 * The id comes from `?secretId=`, the body's `secretId`, or `name` (an id or the full
 * name); without any, it is derived from keyName (AWS_KEY → aws-key) when that makes a
 * valid id, else random.
 */
import { z } from 'zod';
import type { Deps } from '../context.js';
import { bodyObject, createId, parseBody } from '../http/body.js';
import { invalid } from '../http/errors.js';
import { isValidId, parseRef, randomId } from '../http/ids.js';
import type { CollectionRoutes, RequestCtx } from '../http/router.js';
import { type Body, getRow, listRows, render } from './common.js';

const HIDDEN = ['value'] as const;
const keyName = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]{0,127}$/,
    'must be an environment variable name (A-Z, a-z, 0-9, _)',
  );
const value = z.string().max(64 * 1024);

const createSchema = z.strictObject({ name: z.string().optional(), keyName, value });
const updateSchema = z.strictObject({
  name: z.string().optional(),
  keyName: keyName.optional(),
  value: value.optional(),
});

const show = (row: Parameters<typeof render>[0]) => render(row, HIDDEN);

function secretId(ctx: RequestCtx, body: Record<string, unknown>): { id: string; rest: Body } {
  const explicit = 'secretId' in body || (ctx.req.query as Record<string, unknown>)?.secretId;
  const { id, body: rest } = createId(ctx.req, 'secret');
  if (explicit) return { id, rest };
  if (typeof rest.name === 'string')
    return { id: parseRef(rest.name, 'secrets', ctx.account, 'name').id, rest };
  const derived =
    typeof rest.keyName === 'string' ? rest.keyName.toLowerCase().replaceAll('_', '-') : '';
  return { id: isValidId(derived) ? derived : randomId(), rest };
}

async function create(deps: Deps, ctx: RequestCtx) {
  const { id, rest } = secretId(ctx, bodyObject(ctx.req));
  const input = parseBody(createSchema, rest);
  const row = await deps.store.create<Body>('secrets', ctx.account, id, {
    keyName: input.keyName,
    value: input.value,
  });
  return show(row);
}

async function update(deps: Deps, ctx: RequestCtx, id: string) {
  await getRow(deps, 'secrets', ctx.account, id);
  const input = parseBody(updateSchema, bodyObject(ctx.req));
  if (input.keyName === undefined && input.value === undefined)
    throw invalid('nothing to update: give keyName and/or value');
  const row = await deps.store.update<Body>('secrets', ctx.account, id, (body) => ({
    ...body,
    ...(input.keyName !== undefined ? { keyName: input.keyName } : {}),
    ...(input.value !== undefined ? { value: input.value } : {}),
  }));
  return show(row);
}

export function secretRoutes(deps: Deps): CollectionRoutes {
  return {
    collection: 'secrets',
    list: (ctx) => listRows(deps, ctx, 'secrets', show),
    create: (ctx) => create(deps, ctx),
    get: async (ctx, id) => show(await getRow(deps, 'secrets', ctx.account, id)),
    patch: (ctx, id) => update(deps, ctx, id),
    delete: async (ctx, id) => {
      await getRow(deps, 'secrets', ctx.account, id);
      await deps.store.delete('secrets', ctx.account, id);
      return {};
    },
  };
}

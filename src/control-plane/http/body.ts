/**
 * Request bodies: parsed with zod at the boundary (messages name the field), and the id of a
 * create request taken from `?{singular}Id=` or the body's `{singular}Id`, as the reference
 * API accepts both.
 */
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { invalid, zodMessage } from './errors.js';
import { checkId, randomId } from './ids.js';

export function parseBody<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw invalid(zodMessage(r.error));
  return r.data;
}

export function bodyObject(req: FastifyRequest): Record<string, unknown> {
  const body = req.body ?? {};
  if (typeof body !== 'object' || Array.isArray(body))
    throw invalid('body: expected a JSON object');
  return { ...(body as Record<string, unknown>) };
}

/**
 * The id of a create request and the body without the id field. Without either a random id
 * is made (jobs, output models) unless `required`.
 */
export function createId(
  req: FastifyRequest,
  singular: string,
  opts: { required?: boolean } = {},
): { id: string; body: Record<string, unknown> } {
  const field = `${singular}Id`;
  const body = bodyObject(req);
  const fromBody = body[field];
  delete body[field];
  const fromQuery = (req.query as Record<string, unknown> | undefined)?.[field];
  if (fromBody !== undefined && typeof fromBody !== 'string')
    throw invalid(`${field}: expected a string`);
  if (typeof fromQuery === 'string' && fromBody !== undefined && fromQuery !== fromBody)
    throw invalid(`${field} is given twice with different values ('${fromQuery}', '${fromBody}')`);
  const id = (typeof fromQuery === 'string' ? fromQuery : fromBody) as string | undefined;
  if (id === undefined || id === '') {
    if (opts.required) throw invalid(`${field} is required`);
    return { id: randomId(), body };
  }
  return { id: checkId(id, field), body };
}

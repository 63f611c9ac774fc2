/**
 * Request bodies: parsed with zod at the boundary (messages name the field), and the id of a
 * create request taken from `?{singular}Id=` or the body's `{singular}Id`, as the reference
 * API accepts both.
 */
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { invalid, zodMessage } from './errors.js';
import { checkId, randomId } from './ids.js';

/**
 * The longest string any REST body field may hold (characters). Fields with a tighter limit
 * say so in their schema; this bound is what keeps every other one (and every field a schema
 * merely records or drops) from carrying megabytes: a 7 MiB `dataset.format` used to be
 * stored and echoed on every read, slowing the API for every tenant.
 */
export const MAX_TEXT_FIELD = 64 * 1024;

/** Refuses the first string longer than MAX_TEXT_FIELD anywhere in `value`, naming its path. */
export function checkTextLengths(value: unknown, path = 'body'): void {
  if (typeof value === 'string') {
    if (value.length > MAX_TEXT_FIELD)
      throw invalid(
        `${path}: ${value.length} characters is longer than the ${MAX_TEXT_FIELD} a field may hold`,
      );
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      checkTextLengths(v, `${path}[${i}]`);
    });
    return;
  }
  for (const [key, v] of Object.entries(value)) {
    const at = path === 'body' ? key : `${path}.${key}`;
    if (key.length > MAX_TEXT_FIELD) throw invalid(`${path}: a field name is too long`);
    checkTextLengths(v, at);
  }
}

export function parseBody<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  checkTextLengths(value);
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw invalid(zodMessage(r.error));
  return r.data;
}

export function bodyObject(req: FastifyRequest): Record<string, unknown> {
  const body = req.body ?? {};
  if (typeof body !== 'object' || Array.isArray(body))
    throw invalid('body: expected a JSON object');
  checkTextLengths(body);
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

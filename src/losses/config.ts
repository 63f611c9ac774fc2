/** Parsing loss configurations with zod, failing with one readable invalid_loss_config error. */
import type { z } from 'zod';
import { configError } from './errors.js';

export function parseConfig<S extends z.ZodType>(
  what: string,
  schema: S,
  input: unknown,
): z.output<S> {
  const r = schema.safeParse(input ?? {});
  if (r.success) return r.data;
  const detail = r.error.issues
    .map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message))
    .join('; ');
  throw configError(`invalid ${what} config: ${detail}`, r.error);
}

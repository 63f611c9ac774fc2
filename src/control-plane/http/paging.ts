/**
 * List requests and responses: `?pageSize=` (1-200, default 50; 0 means the default) and
 * `?pageToken=`; responses are `{<collection>: [...], nextPageToken}` with '' on the last
 * page. Collections the store does not hold (deployments, training shapes) page in memory.
 */
import { z } from 'zod';
import { invalid, zodMessage } from './errors.js';

export const MAX_PAGE_SIZE = 200;
export const DEFAULT_PAGE_SIZE = 50;

const listQuerySchema = z.looseObject({
  pageSize: z.coerce.number().int().min(0).max(MAX_PAGE_SIZE).optional(),
  pageToken: z.string().optional(),
});

export interface PageRequest {
  pageSize: number;
  pageToken: string | undefined;
}

export function parseListQuery(query: unknown): PageRequest {
  const r = listQuerySchema.safeParse(query ?? {});
  if (!r.success) throw invalid(zodMessage(r.error, 'query'));
  const size = r.data.pageSize;
  return {
    pageSize: size === undefined || size === 0 ? DEFAULT_PAGE_SIZE : size,
    pageToken: r.data.pageToken || undefined,
  };
}

export function listResponse<T>(
  collection: string,
  items: T[],
  nextPageToken: string | undefined,
): Record<string, T[] | string> {
  return { [collection]: items, nextPageToken: nextPageToken ?? '' };
}

const tokenSchema = z.object({ s: z.string(), o: z.number().int().nonnegative() });

/** One page of an in-memory list; the token is bound to `scope` (the collection's parent). */
export function pageArray<T>(
  items: T[],
  page: PageRequest,
  scope: string,
): { items: T[]; nextPageToken: string } {
  let offset = 0;
  if (page.pageToken) {
    let parsed: z.ZodSafeParseResult<z.infer<typeof tokenSchema>>;
    try {
      parsed = tokenSchema.safeParse(
        JSON.parse(Buffer.from(page.pageToken, 'base64url').toString('utf8')),
      );
    } catch {
      parsed = tokenSchema.safeParse(null);
    }
    if (!parsed.success || parsed.data.s !== scope)
      throw invalid(
        'pageToken is not one this listing returned: pass nextPageToken from the previous page unchanged',
      );
    offset = parsed.data.o;
  }
  const end = offset + page.pageSize;
  const next =
    end < items.length
      ? Buffer.from(JSON.stringify({ s: scope, o: end })).toString('base64url')
      : '';
  return { items: items.slice(offset, end), nextPageToken: next };
}

/**
 * Helpers every store-backed collection uses: rendering a row as the API resource, reading
 * one row or answering NOT_FOUND, listing a page.
 */

import type { Collection, ResourceRow } from '../../store/index.js';
import type { Deps } from '../context.js';
import { notFound } from '../http/errors.js';
import { isValidId, resourceName } from '../http/ids.js';
import { listResponse, parseListQuery } from '../http/paging.js';
import type { RequestCtx } from '../http/router.js';
import { isFinal } from './jobs/states.js';

export type Resource = Record<string, unknown> & { name: string };
export type Body = Record<string, unknown>;

/** `{name, ...body, createTime, updateTime}`; `hide` drops fields never shown (secrets). */
export function render(row: ResourceRow<Body>, hide: readonly string[] = []): Resource {
  const body = { ...row.body };
  for (const field of hide) delete body[field];
  return { name: row.name, ...body, createTime: row.createTime, updateTime: row.updateTime };
}

/** The row, or NOT_FOUND naming it (an id that cannot exist is simply not found). */
export async function getRow(
  deps: Deps,
  collection: Collection,
  account: string,
  id: string,
): Promise<ResourceRow<Body>> {
  const row = isValidId(id) ? await deps.store.get<Body>(collection, account, id) : undefined;
  if (!row) throw notFound(`${resourceName(account, collection, id)} not found`);
  return row;
}

export async function listRows(
  deps: Deps,
  ctx: RequestCtx,
  collection: Collection,
  show: (row: ResourceRow<Body>) => Resource = (row) => render(row),
): Promise<Record<string, unknown>> {
  const page = parseListQuery(ctx.req.query);
  const result = await deps.store.list<Body>(collection, ctx.account, {
    pageSize: page.pageSize,
    ...(page.pageToken ? { pageToken: page.pageToken } : {}),
  });
  return listResponse(collection, result.items.map(show), result.nextPageToken);
}

/** Deletes every object under `prefix/` (a resource's blobs); absent objects are fine. */
export async function deletePrefix(
  store: { list(p: string): Promise<{ key: string }[]>; delete(k: string): Promise<void> },
  prefix: string,
): Promise<void> {
  for (const o of await store.list(`${prefix}/`)) await store.delete(o.key);
}

/**
 * Names of the jobs in `collections` that have not ended and whose `fields` name `target`
 * (a dataset or evaluator about to be deleted would pull the rug from under them).
 */
export async function activeJobsUsing(
  deps: Deps,
  account: string,
  collections: readonly Collection[],
  fields: readonly string[],
  target: string,
): Promise<string[]> {
  const found: string[] = [];
  for (const collection of collections) {
    let pageToken: string | undefined;
    do {
      const page = await deps.store.list<Body>(collection, account, {
        pageSize: 200,
        ...(pageToken ? { pageToken } : {}),
      });
      for (const row of page.items)
        if (!isFinal(row.body.state) && fields.some((f) => row.body[f] === target))
          found.push(row.name);
      pageToken = page.nextPageToken;
    } while (pageToken);
  }
  return found;
}

/**
 * Resource paths and the generic operations every kind shares (get, list every page,
 * delete, the `:cancel`/`:resume` custom methods).
 */
import type { TemperApi } from './client.js';
import type { Kind } from './kinds.js';
import { emptySchema, pageSchema, type Resource, resourceSchema } from './schemas.js';

const ID = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * `/v1/accounts/{a}/{collection}/{id}` for a bare id (the connection's account) or a full
 * name `accounts/{a}/{collection}/{id}` (whatever account it names: the server decides).
 */
export function itemPath(api: TemperApi, kind: Pick<Kind, 'collection'>, ref: string): string {
  const parts = ref.split('/');
  if (parts.length === 1 && ID.test(ref)) return `${api.collectionPath(kind.collection)}/${ref}`;
  const [a, account, collection, id] = parts;
  if (
    parts.length === 4 &&
    a === 'accounts' &&
    collection === kind.collection &&
    ID.test(account ?? '') &&
    ID.test(id ?? '')
  )
    return `/v1/${ref}`;
  throw new Error(
    `'${ref}' is neither an id nor a name of the form accounts/{account}/${kind.collection}/{id}`,
  );
}

export async function getResource(api: TemperApi, kind: Kind, ref: string): Promise<Resource> {
  return api.request('GET', itemPath(api, kind, ref), resourceSchema);
}

/** Every resource of the collection, following nextPageToken. */
export async function listAll(
  api: TemperApi,
  collection: string,
  path = api.collectionPath(collection),
): Promise<Resource[]> {
  const all: Resource[] = [];
  let pageToken: string | undefined;
  do {
    const page = await api.request('GET', path, pageSchema(collection), {
      query: { pageSize: 200, pageToken },
    });
    all.push(...((page[collection] as Resource[] | undefined) ?? []));
    const next = page.nextPageToken;
    pageToken = typeof next === 'string' && next !== '' ? next : undefined;
  } while (pageToken);
  return all;
}

export async function deleteResource(api: TemperApi, kind: Kind, ref: string): Promise<void> {
  await api.request('DELETE', itemPath(api, kind, ref), emptySchema);
}

export async function customMethod(
  api: TemperApi,
  kind: Kind,
  ref: string,
  verb: string,
  body: unknown = {},
): Promise<Resource> {
  return api.request('POST', `${itemPath(api, kind, ref)}:${verb}`, resourceSchema, { body });
}

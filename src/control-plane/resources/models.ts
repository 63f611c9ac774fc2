/**
 * `models`: get, list, delete, and import (create, :getUploadEndpoint, :validateUpload:
 * model-import.ts). Rows are also written by promotion (the orchestrator's promote records the
 * model in the store); the public account `temper` serves the bundled models.
 * Deleting a model removes its files from the checkpoint store as well (so the id can be
 * promoted to again), and is refused while a deployment serves it.
 */
import type { Deps } from '../context.js';
import { notFound, precondition } from '../http/errors.js';
import { resourceName } from '../http/ids.js';
import { listResponse, pageArray, parseListQuery } from '../http/paging.js';
import type { CollectionRoutes, RequestCtx } from '../http/router.js';
import { catalogModel, catalogModels, isCatalog } from './catalog.js';
import { deletePrefix, getRow, listRows, render } from './common.js';
import { getDownloadEndpoint } from './downloads.js';
import { createModel, getUploadEndpoint, validateUpload } from './model-import.js';

async function get(deps: Deps, ctx: RequestCtx, id: string) {
  if (!isCatalog(ctx.account)) return render(await getRow(deps, 'models', ctx.account, id));
  const name = resourceName(ctx.account, 'models', id);
  const model = await catalogModel(name);
  if (!model) throw notFound(`${name} not found`);
  return model;
}

async function list(deps: Deps, ctx: RequestCtx) {
  if (!isCatalog(ctx.account)) return listRows(deps, ctx, 'models');
  const page = pageArray(await catalogModels(), parseListQuery(ctx.req.query), ctx.account);
  return listResponse('models', page.items, page.nextPageToken);
}

async function remove(deps: Deps, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, 'models', ctx.account, id);
  const serving = deps.deployments?.list(ctx.account).filter((d) => d.baseModel === row.name) ?? [];
  if (serving.length)
    throw precondition(
      `${row.name} is served by ${serving.map((d) => d.name).join(', ')}: delete the deployment first`,
    );
  await deps.store.delete('models', ctx.account, id);
  await deletePrefix(await deps.checkpoints(), row.name);
  return {};
}

export function modelRoutes(deps: Deps): CollectionRoutes {
  return {
    collection: 'models',
    list: (ctx) => list(deps, ctx),
    get: (ctx, id) => get(deps, ctx, id),
    delete: (ctx, id) => remove(deps, ctx, id),
    // Importing a model: model-import.ts.
    create: (ctx) => createModel(deps, ctx),
    verbs: {
      getUploadEndpoint: { handler: (ctx, id) => getUploadEndpoint(deps, ctx, id) },
      validateUpload: { method: 'GET', handler: (ctx, id) => validateUpload(deps, ctx, id) },
      // Downloading a READY model's files: downloads.ts.
      getDownloadEndpoint: {
        method: 'GET',
        handler: (ctx, id) => getDownloadEndpoint(deps, ctx, 'models', id),
      },
    },
  };
}

/**
 * `deployments` through the in-process DeploymentRegistry (src/deployments): create with
 * hot-load settings, get, list, delete, `:scale` (PATCH), and the hot-load ledger
 * (`GET`/`DELETE .../deployments/{id}/ledger`, hot-load.md). Without a registry the routes
 * answer UNIMPLEMENTED (list: empty).
 *
 * The registry holds deployments in memory (they are processes of this host), so they are
 * not rows in the store. Accounts stay apart: names carry the account, and a file:// hot-load
 * bucket must lie under the account's own folder of the checkpoint store. A bucket URL left
 * out defaults to accounts/{a}/deployments/{id}/snapshots in the checkpoint store.
 */
import { join, relative, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { CATALOG_ACCOUNT, catalogModelDir } from '../../catalog/bundled.js';
import { fileUrlToRoot, openObjectStore } from '../../checkpoints/object-store/index.js';
import { MODEL_FILE } from '../../checkpoints/promotion.js';
import type { DeploymentRegistry } from '../../deployments/registry.js';
import { HotLoadClient } from '../../sdk/index.js';
import type { Deps } from '../context.js';
import { bodyObject, createId, parseBody } from '../http/body.js';
import { ApiError, invalid, precondition } from '../http/errors.js';
import { resourceName } from '../http/ids.js';
import { listResponse, pageArray, parseListQuery } from '../http/paging.js';
import type { CollectionRoutes, RequestCtx } from '../http/router.js';
import { resolveModel } from './refs.js';

const createSchema = z.strictObject({
  displayName: z.string().max(200).optional(),
  baseModel: z.string().min(1),
  minReplicaCount: z.number().int().min(0).max(64).default(0),
  maxReplicaCount: z.number().int().min(0).max(64).default(1),
  enableHotLoad: z.boolean().default(true),
  hotLoadBucketType: z.enum(['FW_HOSTED', 'S3', 'MINIO', 'NEBIUS']).default('FW_HOSTED'),
  hotLoadBucketUrl: z.string().min(1).optional(),
  hotLoadTransitionType: z.enum(['ASYNC', 'SYNC']).default('ASYNC'),
  replica: z
    .strictObject({
      threads: z.number().int().positive().optional(),
      maxConcurrent: z.number().int().positive().optional(),
      maxDecodeBatch: z.number().int().positive().optional(),
    })
    .default({}),
});

const scaleSchema = z.strictObject({
  minReplicaCount: z.number().int().min(0).max(64),
  maxReplicaCount: z.number().int().min(0).max(64),
});

function registry(deps: Deps): DeploymentRegistry {
  if (!deps.deployments)
    throw new ApiError('UNIMPLEMENTED', 'deployments are not enabled on this control plane');
  return deps.deployments;
}

const isFileUrl = (url: string) => !/^[a-z][a-z0-9+.-]*:\/\//i.test(url) || /^file:/i.test(url);

/** The hot-load bucket: the default one, or the caller's (file:// only inside its account). */
function bucketUrl(deps: Deps, account: string, id: string, given: string | undefined): string {
  const accountDir = join(fileUrlToRoot(deps.checkpointUrl), 'accounts', account);
  if (given === undefined) {
    if (!isFileUrl(deps.checkpointUrl))
      return `${deps.checkpointUrl}/accounts/${account}/deployments/${id}/snapshots`;
    return pathToFileURL(join(accountDir, 'deployments', id, 'snapshots')).href;
  }
  if (given.endsWith('/')) throw invalid('hotLoadBucketUrl must not end with a slash');
  if (isFileUrl(given)) {
    const rel = relative(accountDir, fileUrlToRoot(given));
    if (rel.startsWith('..') || rel.startsWith(sep) || rel === '')
      throw invalid(
        `hotLoadBucketUrl: a file:// bucket must lie under ${pathToFileURL(accountDir).href}/`,
      );
  }
  return given;
}

/**
 * What the replicas load: the base model's directory, and for a LoRA model (an adapter) the
 * adapter, served as the deployment's first hot-loaded snapshot on top of its base.
 */
async function deployedModel(deps: Deps, ctx: RequestCtx, value: string) {
  const model = await resolveModel(deps, ctx, value, 'baseModel');
  if (model.kind !== 'HF_PEFT_ADDON')
    return { base: await baseModelDir(deps, ctx, model), adapter: null };
  const row = await deps.store.get<{
    peftDetails?: { baseModel?: string } | null;
    baseModel?: string | null;
  }>('models', model.name.split('/')[1]!, model.name.split('/').pop()!);
  const parent = row?.body.peftDetails?.baseModel ?? row?.body.baseModel;
  if (!parent)
    throw precondition(`baseModel: LoRA model ${model.name} does not record its base model`);
  const base = await resolveModel(deps, ctx, parent, 'baseModel');
  return { base: await baseModelDir(deps, ctx, base), adapter: model.name };
}

/** The directory the replicas load the base weights from. */
async function baseModelDir(deps: Deps, ctx: RequestCtx, model: { name: string; kind: string }) {
  if (model.kind === 'HF_PEFT_ADDON')
    throw precondition(`baseModel: ${model.name} is a LoRA adapter of a LoRA adapter`);
  if (model.name.startsWith(`accounts/${CATALOG_ACCOUNT}/`))
    return { name: model.name, dir: catalogModelDir(model.name) };
  if (!isFileUrl(deps.checkpointUrl))
    throw precondition(
      `baseModel: ${model.name} lives in ${deps.checkpointUrl}; replicas load models from a file:// store only`,
    );
  return { name: model.name, dir: join(fileUrlToRoot(deps.checkpointUrl), model.name) };
}

async function create(deps: Deps, ctx: RequestCtx) {
  const reg = registry(deps);
  const { id, body } = createId(ctx.req, 'deployment');
  const input = parseBody(createSchema, body);
  const { base, adapter } = await deployedModel(deps, ctx, input.baseModel);
  const bucket = bucketUrl(deps, ctx.account, id, input.hotLoadBucketUrl);
  const created = await reg.create({
    account: ctx.account,
    deploymentId: id,
    baseModel: base.name,
    baseModelDir: base.dir,
    hotLoad: {
      bucketType: input.hotLoadBucketType,
      bucketUrl: bucket,
      transitionType: input.hotLoadTransitionType,
    },
    minReplicaCount: input.minReplicaCount,
    maxReplicaCount: input.maxReplicaCount,
    replica: input.replica,
  });
  if (!adapter) return created;
  try {
    await serveAdapter(deps, created, bucket, adapter);
  } catch (err) {
    await reg.delete(created.name).catch(() => undefined);
    throw precondition(`could not load ${adapter} on its base: ${(err as Error).message}`);
  }
  return { ...reg.get(created.name), model: adapter };
}

/**
 * A LoRA model's files (a promoted PEFT export: its manifest, config and weights) copied into
 * the deployment's hot-load bucket as a snapshot named after the model, then hot-loaded on
 * every replica.
 */
async function serveAdapter(
  deps: Deps,
  deployment: { name: string; gatewayUrl: string | null },
  bucket: string,
  model: string,
) {
  if (!deployment.gatewayUrl) throw new Error('the deployment has no gateway');
  const identity = `${model.split('/').pop()}-adapter`;
  const [from, to] = [await deps.checkpoints(), await openObjectStore(bucket)];
  for (const f of await from.list(`${model}/`)) {
    const path = f.key.slice(model.length + 1);
    if (path === MODEL_FILE) continue;
    await to.put(`${identity}/${path}`, await from.getStream(f.key));
  }
  const client = new HotLoadClient({
    inferenceUrl: deployment.gatewayUrl,
    deployment: deployment.name,
  });
  await client.hotloadAndWait(identity, {}, 120_000);
}

async function ledger(deps: Deps, ctx: RequestCtx, id: string, reset: boolean) {
  const name = resourceName(ctx.account, 'deployments', id);
  const gateway = registry(deps).gateway(name);
  if (reset) return { deployment: name, removed: gateway.ledger.reset() };
  gateway.ledger.update(await gateway.statuses());
  return { deployment: name, snapshots: gateway.ledger.list() };
}

export function deploymentRoutes(deps: Deps): CollectionRoutes {
  const name = (ctx: RequestCtx, id: string) => resourceName(ctx.account, 'deployments', id);
  return {
    collection: 'deployments',
    list: async (ctx) => {
      const all = deps.deployments?.list(ctx.account) ?? [];
      const page = pageArray(all, parseListQuery(ctx.req.query), ctx.account);
      return listResponse('deployments', page.items, page.nextPageToken);
    },
    create: (ctx) => create(deps, ctx),
    get: async (ctx, id) => registry(deps).get(name(ctx, id)),
    delete: async (ctx, id) => {
      await registry(deps).delete(name(ctx, id));
      return {};
    },
    verbs: {
      scale: {
        method: 'PATCH',
        handler: (ctx, id) =>
          registry(deps).scale(name(ctx, id), parseBody(scaleSchema, bodyObject(ctx.req))),
      },
    },
    sub: [
      { method: 'GET', path: 'ledger', handler: (ctx, p) => ledger(deps, ctx, p.id ?? '', false) },
      {
        method: 'DELETE',
        path: 'ledger',
        handler: (ctx, p) => ledger(deps, ctx, p.id ?? '', true),
      },
    ],
  };
}

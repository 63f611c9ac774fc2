/**
 * `deployments` through the in-process DeploymentRegistry (src/deployments): create, get,
 * list, PATCH (replica counts, the hot-load target, descriptive fields; `?updateMask=`),
 * delete, `:scale` (PATCH), and the hot-load ledger (`GET`/`DELETE .../deployments/{id}/ledger`,
 * hot-load.md). Without a registry the routes answer UNIMPLEMENTED (list: empty). The request
 * and resource shapes, including the Fireworks SDK's fields, are in deployment-spec.ts.
 *
 * The registry runs deployments as processes of this host and keeps each as a row of the
 * store (its spec, never a credential): a restarted control plane brings them back
 * (`restoreDeployments`, new gateway ports and access tokens, LoRA adapters and multi-LoRA
 * addons loaded again).
 * Accounts stay apart: names carry the account, a file:// hot-load
 * bucket must lie under the account's own folder of the checkpoint store, and
 * `hotLoadTrainerJob` must be a trainer of the caller's account. A bucket left out defaults to
 * accounts/{a}/deployments/{id}/snapshots in the checkpoint store.
 */
import { join } from 'node:path';
import { CATALOG_ACCOUNT, catalogModelDir } from '../../catalog/bundled.js';
import { fileUrlToRoot } from '../../checkpoints/object-store/index.js';
import type { DeploymentRegistry, DeploymentResource } from '../../deployments/registry.js';
import { HotLoadClient } from '../../sdk/index.js';
import type { Deps } from '../context.js';
import { bodyObject, createId, parseBody } from '../http/body.js';
import { ApiError, invalid, precondition } from '../http/errors.js';
import { resourceName } from '../http/ids.js';
import { listResponse, pageArray, parseListQuery } from '../http/paging.js';
import type { CollectionRoutes, RequestCtx } from '../http/router.js';
import { copyAdapterFiles } from './adapter-files.js';
import {
  checkDeploymentShape,
  createSchema,
  givenBucket,
  isFileUrl,
  ownBucket,
  type PatchInput,
  patchedFields,
  patchSchema,
  type Recorded,
  renderDeployment,
  scaleSchema,
  trainerBucket,
  withoutIgnored,
} from './deployment-spec.js';
import { resolveModel } from './refs.js';

function registry(deps: Deps): DeploymentRegistry {
  if (!deps.deployments)
    throw new ApiError('UNIMPLEMENTED', 'deployments are not enabled on this control plane');
  return deps.deployments;
}

/**
 * What the replicas load: the base model's directory, and for a LoRA model (an adapter) the
 * adapter, served as the deployment's first hot-loaded snapshot on top of its base.
 */
async function deployedModel(deps: Deps, ctx: RequestCtx, value: string) {
  const model = await resolveModel(deps, ctx, value, 'baseModel');
  if (model.kind !== 'HF_PEFT_ADDON')
    return { base: await baseModelDir(deps, model), adapter: null };
  const row = await deps.store.get<{
    peftDetails?: { baseModel?: string } | null;
    baseModel?: string | null;
  }>('models', model.name.split('/')[1]!, model.name.split('/').pop()!);
  const parent = row?.body.peftDetails?.baseModel ?? row?.body.baseModel;
  if (!parent)
    throw precondition(`baseModel: LoRA model ${model.name} does not record its base model`);
  const base = await resolveModel(deps, ctx, parent, 'baseModel');
  return { base: await baseModelDir(deps, base), adapter: model.name };
}

/** The directory the replicas load the base weights from. */
async function baseModelDir(deps: Deps, model: { name: string; kind: string }) {
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

/** The hot-load bucket a create or update asks for (a trainer's, a given one, or its own). */
async function hotLoadTarget(
  deps: Deps,
  ctx: RequestCtx,
  id: string,
  baseModel: string,
  input: { hotLoadTrainerJob?: string | undefined; hotLoadBucketUrl?: string | undefined },
): Promise<{ bucketUrl: string; trainerJob: string | undefined }> {
  if (input.hotLoadTrainerJob && input.hotLoadBucketUrl)
    throw invalid(
      "give hotLoadTrainerJob (serve that trainer's sampler snapshots) or hotLoadBucketUrl, not both",
    );
  if (input.hotLoadTrainerJob) {
    const t = await trainerBucket(deps, ctx, input.hotLoadTrainerJob, baseModel);
    return { bucketUrl: t.bucketUrl, trainerJob: t.job };
  }
  if (input.hotLoadBucketUrl)
    return {
      bucketUrl: givenBucket(deps, ctx.account, input.hotLoadBucketUrl),
      trainerJob: undefined,
    };
  return { bucketUrl: ownBucket(deps, ctx.account, id), trainerJob: undefined };
}

/** Settings of other resources a deployment create is refused with, and why. */
const NOT_DEPLOYMENT_FIELDS: Record<string, string> = {
  remoteServerUrl:
    'remoteServerUrl is not a deployment setting: deployments never call user servers. A remote environment belongs to a reinforcementFineTuningJob (its remoteServerUrl, which the worker only calls on public addresses)',
};

async function create(deps: Deps, ctx: RequestCtx) {
  const reg = registry(deps);
  const given = bodyObject(ctx.req);
  for (const [field, why] of Object.entries(NOT_DEPLOYMENT_FIELDS))
    if (field in given) throw invalid(why);
  const { id, body } = createId(ctx.req, 'deployment');
  // `precision` is otherwise a hosted setting with no effect here; addons on a quantized
  // shape are refused as the documented service refuses them.
  if (given.enableAddons === true && /^FP[48]/i.test(String(given.precision ?? '')))
    throw invalid(
      `addons cannot be enabled with quantized precisions (FP8/FP4): precision ${String(given.precision)}; use BF16, or merge the adapter into a model`,
    );
  const input = parseBody(createSchema, withoutIgnored(body));
  const { base, adapter } = await deployedModel(deps, ctx, input.baseModel);
  if (input.deploymentShape) checkDeploymentShape(input.deploymentShape, base.name);
  const target = await hotLoadTarget(deps, ctx, id, base.name, input);
  const {
    baseModel: _b,
    minReplicaCount,
    maxReplicaCount,
    hotLoadBucketType,
    hotLoadBucketUrl: _u,
    hotLoadTrainerJob: _t,
    hotLoadTransitionType,
    replica,
    ...recorded
  } = input;
  const fields: Recorded = {
    ...recorded,
    ...(target.trainerJob ? { hotLoadTrainerJob: target.trainerJob } : {}),
    ...(adapter ? { model: adapter } : {}),
  };
  const created = await reg.create({
    account: ctx.account,
    deploymentId: id,
    baseModel: base.name,
    baseModelDir: base.dir,
    hotLoad: {
      bucketType: hotLoadBucketType,
      bucketUrl: target.bucketUrl,
      transitionType: hotLoadTransitionType,
    },
    minReplicaCount,
    maxReplicaCount,
    replica,
    fields: { ...fields },
  });
  if (!adapter) return renderDeployment(created);
  try {
    await serveAdapter(deps, created, target.bucketUrl, adapter);
  } catch (err) {
    await reg.delete(created.name).catch(() => undefined);
    throw precondition(`could not load ${adapter} on its base: ${(err as Error).message}`);
  }
  // its gateway lists the LoRA model (GET /inference/v1/models) and names it in responses
  reg.gateway(created.name).setAddons([adapter]);
  return renderDeployment(reg.get(created.name));
}

/**
 * PATCH: the named fields (see patchedFields), validated all together before anything
 * changes. Descriptive fields are set at once; a new hot-load target restarts the replicas on
 * the base model (the old bucket's snapshots are gone from view); replica counts scale.
 */
async function update(deps: Deps, ctx: RequestCtx, id: string) {
  const reg = registry(deps);
  const name = resourceName(ctx.account, 'deployments', id);
  const current = reg.get(name);
  const body = parseBody(patchSchema, withoutIgnored(bodyObject(ctx.req)));
  const fields = patchedFields(body, (ctx.req.query as Record<string, unknown>)?.updateMask);
  const has = (k: keyof PatchInput) => fields.includes(k);
  const recorded = { ...(current.fields as Recorded) };
  for (const k of ['displayName', 'description', 'annotations', 'forTraining'] as const)
    if (has(k)) {
      if (body[k] === undefined) delete recorded[k];
      else (recorded as Record<string, unknown>)[k] = body[k];
    }
  let hotLoad: { bucketUrl?: string; transitionType?: 'ASYNC' | 'SYNC' } | undefined;
  if (has('hotLoadTrainerJob') || has('hotLoadBucketUrl')) {
    const target = await hotLoadTarget(deps, ctx, id, current.baseModel, {
      hotLoadTrainerJob: has('hotLoadTrainerJob') ? body.hotLoadTrainerJob || undefined : undefined,
      hotLoadBucketUrl: has('hotLoadBucketUrl') ? body.hotLoadBucketUrl : undefined,
    });
    if (target.trainerJob) recorded.hotLoadTrainerJob = target.trainerJob;
    else delete recorded.hotLoadTrainerJob;
    if (target.bucketUrl !== current.hotLoad.bucketUrl) hotLoad = { bucketUrl: target.bucketUrl };
  }
  if (has('hotLoadTransitionType')) {
    const t = body.hotLoadTransitionType ?? 'ASYNC';
    if (t !== current.hotLoad.transitionType) hotLoad = { ...hotLoad, transitionType: t };
  }
  const counts = {
    minReplicaCount: has('minReplicaCount') ? (body.minReplicaCount ?? 0) : current.minReplicaCount,
    maxReplicaCount: has('maxReplicaCount') ? (body.maxReplicaCount ?? 1) : current.maxReplicaCount,
  };
  if (counts.minReplicaCount > counts.maxReplicaCount)
    throw invalid(
      `minReplicaCount (${counts.minReplicaCount}) exceeds maxReplicaCount (${counts.maxReplicaCount})`,
    );
  if (
    (hotLoad ||
      counts.minReplicaCount !== current.minReplicaCount ||
      counts.maxReplicaCount !== current.maxReplicaCount) &&
    current.state !== 'READY'
  )
    throw precondition(`${name} is ${current.state}: wait until it is READY to change it`);
  await reg.setFields(name, { ...recorded });
  if (hotLoad) await reg.setHotLoad(name, hotLoad);
  if (
    counts.minReplicaCount !== current.minReplicaCount ||
    counts.maxReplicaCount !== current.maxReplicaCount
  )
    await reg.scale(name, counts);
  return renderDeployment(reg.get(name));
}

/**
 * A LoRA model's files (a promoted PEFT export: its manifest, config and weights) copied into
 * the deployment's hot-load bucket as a snapshot named after the model, then hot-loaded on
 * every replica.
 */
async function serveAdapter(
  deps: Deps,
  deployment: DeploymentResource,
  bucket: string,
  model: string,
) {
  if (!deployment.gatewayUrl) throw new Error('the deployment has no gateway');
  const identity = `${model.split('/').pop()}-adapter`;
  await copyAdapterFiles(deps, model, bucket, identity);
  const client = new HotLoadClient({
    inferenceUrl: deployment.gatewayUrl,
    deployment: deployment.name,
    // the gateway takes its deployment's access token (gateway/auth.ts)
    apiKey: registry(deps).accessToken(deployment.name),
  });
  await client.hotloadAndWait(identity, {}, 120_000);
}

export interface RestoredDeployments {
  restored: string[];
  failed: { name: string; reason: string }[];
}

/** See ControlPlane.restoreDeployments. */
export async function restoreDeployments(deps: Deps): Promise<RestoredDeployments> {
  if (!deps.deployments) return { restored: [], failed: [] };
  const reg = deps.deployments;
  const out = await reg.restore();
  // a deployment reported for an addon it lost still serves: its adapter comes back too
  for (const name of new Set([...out.restored, ...out.failed.map((f) => f.name)])) {
    let deployment: DeploymentResource;
    try {
      deployment = reg.get(name);
    } catch {
      continue; // a row restore could not read
    }
    if (deployment.state !== 'READY') continue;
    const adapter = deployment.fields.model;
    if (typeof adapter !== 'string') continue;
    try {
      await serveAdapter(deps, deployment, deployment.hotLoad.bucketUrl, adapter);
      reg.gateway(name).setAddons([adapter]);
    } catch (err) {
      const reason = `restored, but its adapter ${adapter} could not be loaded again: ${(err as Error).message}`;
      out.restored = out.restored.filter((n) => n !== name);
      out.failed.push({ name, reason });
    }
  }
  for (const f of out.failed) deps.log.warn(f, 'deployment not restored');
  if (out.restored.length > 0) deps.log.info({ restored: out.restored }, 'deployments restored');
  return out;
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
      const all = (deps.deployments?.list(ctx.account) ?? []).map(renderDeployment);
      const page = pageArray(all, parseListQuery(ctx.req.query), ctx.account);
      return listResponse('deployments', page.items, page.nextPageToken);
    },
    create: (ctx) => create(deps, ctx),
    get: async (ctx, id) => renderDeployment(registry(deps).get(name(ctx, id))),
    patch: (ctx, id) => update(deps, ctx, id),
    // `?ignoreChecks=true&hard=true` (the SDK's) change nothing: deletion is always immediate.
    delete: async (ctx, id) => {
      await registry(deps).delete(name(ctx, id));
      return {};
    },
    verbs: {
      scale: {
        method: 'PATCH',
        handler: async (ctx, id) =>
          renderDeployment(
            await registry(deps).scale(name(ctx, id), parseBody(scaleSchema, bodyObject(ctx.req))),
          ),
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

/**
 * Multi-LoRA (the documentation's "Load LoRA" / "Unload LoRA"):
 *
 *   POST   /v1/accounts/{a}/deployedModels        {model, deployment, displayName?, ...}
 *   GET    /v1/accounts/{a}/deployedModels[/{id}]
 *   DELETE /v1/accounts/{a}/deployedModels/{id}
 *
 * A deployedModel is a LoRA model loaded as an addon on a running deployment of its base
 * model created with `enableAddons: true` (others refuse addons, as documented): the adapter's files are copied into the deployment's hot-load bucket and every
 * replica serves them beside the base; a request picks the adapter with `model:
 * accounts/{a}/models/{m}` or `accounts/{a}/models/{m}#accounts/{a}/deployments/{d}`. Loads
 * and unloads change nothing else the deployment serves. The records live with the
 * deployments: each is an addon in its deployment's store row (its model, the snapshot its
 * files were copied to, and the fields below), so a restarted control plane loads it again
 * (`restoreDeployments`); a deployedModel whose deployment is gone is gone too.
 */
import { z } from 'zod';
import type { DeploymentRegistry } from '../../deployments/registry.js';
import type { Deps } from '../context.js';
import { createId, parseBody } from '../http/body.js';
import { ApiError, invalid, notFound, precondition } from '../http/errors.js';
import { resourceName } from '../http/ids.js';
import { listResponse, pageArray, parseListQuery } from '../http/paging.js';
import type { CollectionRoutes, RequestCtx } from '../http/router.js';
import { copyAdapterFiles } from './adapter-files.js';
import type { Recorded } from './deployment-spec.js';
import { resolveModel } from './refs.js';

const COLLECTION = 'deployedModels';
const DEPLOYMENT = /^accounts\/([a-z0-9-]+)\/deployments\/([a-z0-9-]+)$/;

const createSchema = z
  .object({
    model: z.string().min(1, 'name the LoRA model (accounts/{account}/models/{id})'),
    deployment: z
      .string()
      .regex(DEPLOYMENT, 'expected a deployment name (accounts/{account}/deployments/{id})'),
    displayName: z.string().max(256).optional(),
    description: z.string().max(2048).optional(),
    // accepted as the documented service takes them; temper serves every addon on request
    default: z.boolean().optional(),
    serverless: z.boolean().optional(),
    public: z.boolean().optional(),
  })
  .passthrough();

interface DeployedModel {
  name: string;
  model: string;
  deployment: string;
  displayName: string;
  description: string;
  state: 'DEPLOYED';
  default: boolean;
  serverless: false;
  public: false;
  createTime: string;
  updateTime: string;
}

function registry(deps: Deps): DeploymentRegistry {
  if (!deps.deployments)
    throw new ApiError('UNIMPLEMENTED', 'deployments are not enabled on this control plane');
  return deps.deployments;
}

/** The fields of a deployedModel kept with its addon in the deployment's row. */
const keptSchema = z.object({
  name: z.string(),
  displayName: z.string(),
  description: z.string(),
  default: z.boolean(),
  createTime: z.string(),
  updateTime: z.string(),
});

/**
 * The account's deployedModels: the addons kept by its deployments that their gateway serves
 * (one kept but not loaded again after a restart is reported by restoreDeployments instead).
 */
function served(reg: DeploymentRegistry, account: string): DeployedModel[] {
  const out: DeployedModel[] = [];
  for (const d of reg.list(account)) {
    let loaded: string[];
    try {
      loaded = reg
        .gateway(d.name)
        .loadedAddons()
        .map((a) => a.model);
    } catch {
      continue; // no gateway (stopped or failed): it serves nothing
    }
    for (const a of reg.addons(d.name)) {
      const kept = keptSchema.safeParse(a.fields);
      if (!kept.success || !loaded.includes(a.model)) continue;
      out.push({
        ...kept.data,
        model: a.model,
        deployment: d.name,
        state: 'DEPLOYED',
        serverless: false,
        public: false,
      });
    }
  }
  return out.sort((x, y) => x.createTime.localeCompare(y.createTime));
}

/** The snapshot name an addon's files get in the deployment's hot-load bucket. */
const addonIdentity = (model: string) => `${model.split('/').pop()}-addon`;

async function create(deps: Deps, ctx: RequestCtx) {
  const reg = registry(deps);
  const { id, body } = createId(ctx.req, 'deployedModel');
  const input = parseBody(createSchema, body);
  const name = resourceName(ctx.account, COLLECTION, id);
  if (served(reg, ctx.account).some((r) => r.name === name))
    throw new ApiError('ALREADY_EXISTS', `${name} already exists`);
  const model = await resolveModel(deps, ctx, input.model, 'model');
  if (model.kind !== 'HF_PEFT_ADDON')
    throw invalid(
      `model: ${model.name} is not a LoRA adapter (kind ${model.kind}); deploy a base model with POST /v1/accounts/${ctx.account}/deployments`,
    );
  if (!input.deployment.startsWith(`accounts/${ctx.account}/`))
    throw notFound(`${input.deployment} not found`);
  let deployment: ReturnType<DeploymentRegistry['get']>;
  try {
    deployment = reg.get(input.deployment);
  } catch {
    throw notFound(`${input.deployment} not found`);
  }
  if (deployment.state !== 'READY')
    throw precondition(`deployment: ${deployment.name} is ${deployment.state}, not READY`);
  if ((deployment.fields as Recorded).enableAddons !== true)
    throw precondition(
      `deployment: ${deployment.name} was created without addons enabled, so LoRA addons cannot be loaded on it: create a deployment of ${deployment.baseModel} with enableAddons: true (temper deployment create --enable-addons), or deploy ${model.name} itself`,
    );
  const [account, modelId] = [model.name.split('/')[1] as string, model.name.split('/').pop()!];
  const row = await deps.store.get<{
    peftDetails?: { baseModel?: string } | null;
    baseModel?: string | null;
  }>('models', account, modelId);
  const parent = row?.body.peftDetails?.baseModel ?? row?.body.baseModel ?? null;
  if (parent !== deployment.baseModel)
    throw precondition(
      `model: ${model.name} is an adapter of ${parent ?? 'an unrecorded base'}, but ${deployment.name} serves ${deployment.baseModel}: load it on a deployment of its base model`,
    );
  const gateway = reg.gateway(deployment.name);
  if (gateway.loadedAddons().some((a) => a.model === model.name))
    throw new ApiError('ALREADY_EXISTS', `${model.name} is already loaded on ${deployment.name}`);
  // the adapter's files (a promoted PEFT export) become a snapshot in the deployment's bucket
  const identity = addonIdentity(model.name);
  await copyAdapterFiles(deps, model.name, deployment.hotLoad.bucketUrl, identity);
  const now = new Date().toISOString();
  const kept: z.output<typeof keptSchema> = {
    name,
    displayName: input.displayName ?? '',
    description: input.description ?? '',
    default: input.default ?? false,
    createTime: now,
    updateTime: now,
  };
  try {
    await reg.loadAddon(deployment.name, { model: model.name, identity, fields: kept });
  } catch (err) {
    throw precondition(
      `could not load ${model.name} on ${deployment.name}: ${(err as Error).message}`,
    );
  }
  const record: DeployedModel = {
    ...kept,
    model: model.name,
    deployment: deployment.name,
    state: 'DEPLOYED',
    serverless: false,
    public: false,
  };
  return record;
}

function find(deps: Deps, ctx: RequestCtx, id: string): DeployedModel {
  const name = resourceName(ctx.account, COLLECTION, id);
  const r = served(registry(deps), ctx.account).find((x) => x.name === name);
  if (!r) throw notFound(`${name} not found`);
  return r;
}

export function deployedModelRoutes(deps: Deps): CollectionRoutes {
  return {
    collection: COLLECTION,
    list: async (ctx) => {
      const all = deps.deployments ? served(deps.deployments, ctx.account) : [];
      const page = pageArray(all, parseListQuery(ctx.req.query), ctx.account);
      return listResponse(COLLECTION, page.items, page.nextPageToken);
    },
    create: (ctx) => create(deps, ctx),
    get: async (ctx, id) => find(deps, ctx, id),
    delete: async (ctx, id) => {
      const r = find(deps, ctx, id);
      await registry(deps).unloadAddon(r.deployment, r.model);
      return {};
    },
  };
}

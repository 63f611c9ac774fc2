/**
 * A trainer job's checkpoints, read from the checkpoint catalog (the blobs in the checkpoint
 * store, so they stay listed after the trainer row is deleted):
 *
 *   GET  .../rlorTrainerJobs/{job}/checkpoints?pageSize=200&pageToken=   oldest first
 *   GET  .../rlorTrainerJobs/{job}/checkpoints/{checkpoint}
 *   POST .../rlorTrainerJobs/{job}/checkpoints/{checkpoint}:promote
 *        {outputModelId, baseModel?}  → the model (orchestrator.promote copies the files and
 *        writes the models row)
 *
 * Promotion is validated before the orchestrator is asked (the spec: a rejected id must
 * leave nothing behind): the id, that the model does not exist, that the checkpoint exists
 * and is promotable, and that baseModel is a model the caller can read.
 */
import { z } from 'zod';
import { CheckpointCatalog, toRow } from '../../checkpoints/catalog/catalog.js';
import { validateOutputModelId } from '../../checkpoints/promotion.js';
import type { Collection } from '../../store/index.js';
import type { Deps } from '../context.js';
import { bodyObject, parseBody } from '../http/body.js';
import { ApiError, invalid, notFound, precondition, zodMessage } from '../http/errors.js';
import { resourceName } from '../http/ids.js';
import type { CollectionRoutes, RequestCtx, SubRoute } from '../http/router.js';
import { getRow } from './common.js';
import { resolveModel } from './refs.js';

const listQuery = z.looseObject({
  pageSize: z.coerce.number().int().nonnegative().optional(),
  pageToken: z.string().optional(),
});

const promoteSchema = z.strictObject({
  outputModelId: z.string(),
  baseModel: z.string().min(1).optional(),
  /** The checkpoint's full name, if the client sends it: must match the path. */
  name: z.string().optional(),
});

async function catalog(deps: Deps): Promise<CheckpointCatalog> {
  return new CheckpointCatalog(await deps.checkpoints());
}

async function list(deps: Deps, ctx: RequestCtx, job: string) {
  const q = listQuery.safeParse(ctx.req.query ?? {});
  if (!q.success) throw invalid(zodMessage(q.error, 'query'));
  const parent = resourceName(ctx.account, 'rlorTrainerJobs', job);
  return (await catalog(deps)).list(parent, {
    ...(q.data.pageSize !== undefined ? { pageSize: q.data.pageSize } : {}),
    ...(q.data.pageToken ? { pageToken: q.data.pageToken } : {}),
  });
}

async function promote(deps: Deps, ctx: RequestCtx, name: string) {
  const body = parseBody(promoteSchema, bodyObject(ctx.req));
  if (body.name !== undefined && body.name !== name)
    throw invalid(`name '${body.name}' does not match the checkpoint in the path (${name})`);
  return promoteCheckpoint(deps, ctx, name, body.outputModelId, body.baseModel);
}

async function promoteCheckpoint(
  deps: Deps,
  ctx: RequestCtx,
  name: string,
  outputModelIdIn: string,
  baseModelIn: string | undefined,
) {
  const outputModelId = validateOutputModelId(outputModelIdIn);
  const baseModel = baseModelIn
    ? (await resolveModel(deps, ctx, baseModelIn, 'baseModel')).name
    : undefined;
  const modelName = resourceName(ctx.account, 'models', outputModelId);
  if (await deps.store.get('models', ctx.account, outputModelId))
    throw new ApiError(
      'ALREADY_EXISTS',
      `model ${modelName} already exists: choose another outputModelId`,
    );
  const entry = await (await catalog(deps)).get(name);
  if (!entry.promotable)
    throw precondition(
      `checkpoint ${name} is ${entry.checkpointType} and cannot be promoted: promote a sampler export (INFERENCE_BASE or INFERENCE_LORA)`,
    );
  return deps.orchestrator.promote({
    account: ctx.account,
    checkpoint: name,
    outputModelId,
    ...(baseModel ? { baseModel } : {}),
  });
}

/**
 * A managed job's checkpoints: those of every trainer pod it ran on (a job relaunched after
 * preemption has several, recorded by the workflow in `trainerJobIds`), oldest first.
 */
export async function managedJobCheckpoints(
  deps: Deps,
  ctx: RequestCtx,
  collection: Collection,
  id: string,
) {
  const row = await getRow(deps, collection, ctx.account, id);
  const pods = Array.isArray(row.body.trainerJobIds) ? (row.body.trainerJobIds as string[]) : [];
  const cat = await catalog(deps);
  const rows = (
    await Promise.all(
      pods.map((pod) => cat.listAll(resourceName(ctx.account, 'rlorTrainerJobs', pod))),
    )
  ).flat();
  rows.sort((a, b) => a.createTime.localeCompare(b.createTime) || a.name.localeCompare(b.name));
  return { job: row.name, checkpoints: rows };
}

function checkpointName(ctx: RequestCtx, job: string, checkpoint: string): string {
  return `${resourceName(ctx.account, 'rlorTrainerJobs', job)}/checkpoints/${checkpoint}`;
}

export function checkpointSubRoutes(deps: Deps): SubRoute[] {
  return [
    { method: 'GET', path: 'checkpoints', handler: (ctx, p) => list(deps, ctx, p.id ?? '') },
    {
      method: 'GET',
      path: 'checkpoints/:target',
      handler: async (ctx, p) => {
        const name = checkpointName(ctx, p.id ?? '', p.target ?? '');
        if (name.includes(':')) throw notFound(`no method GET on ${name}`);
        return toRow(await (await catalog(deps)).get(name));
      },
    },
    {
      method: 'POST',
      path: 'checkpoints/:target',
      handler: async (ctx, p) => {
        const [checkpoint, verb] = (p.target ?? '').split(':');
        const name = checkpointName(ctx, p.id ?? '', checkpoint ?? '');
        if (verb !== 'promote')
          throw notFound(`no method POST ${verb ? `':${verb}' ` : ''}on ${name}`);
        return promote(deps, ctx, name);
      },
    },
  ];
}

/**
 * `POST /v1/accounts/{a}/checkpoints/{checkpoint}:promote` as the Fireworks SDK sends it
 * (`promote_checkpoint`): the trainer job and the output model in the body, as resource
 * names, in snake_case. Promotion is synchronous here, so the answer is `{model}` at once
 * (the SDK also accepts a long-running operation; `async_promotion` needs none).
 */
const sdkPromoteSchema = z.looseObject({
  output_model: z.string().min(1),
  trainer_job_id: z.string().min(1),
  base_model: z.string().min(1).nullish(),
  async_promotion: z.boolean().nullish(),
});

function lastSegment(value: string, account: string, collection: string, field: string): string {
  const m = /^accounts\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(value);
  if (!m) return value;
  if (m[2] !== collection)
    throw invalid(
      `${field}: '${value}' is not a resource name accounts/{account}/${collection}/{id}`,
    );
  if (m[1] !== account)
    throw invalid(`${field}: '${value}' is not in accounts/${account}, the account in the path`);
  return m[3]!;
}

export function accountCheckpointRoutes(deps: Deps): CollectionRoutes {
  return {
    collection: 'checkpoints',
    verbs: {
      promote: {
        handler: async (ctx, checkpoint) => {
          const body = parseBody(sdkPromoteSchema, bodyObject(ctx.req));
          const job = lastSegment(
            body.trainer_job_id,
            ctx.account,
            'rlorTrainerJobs',
            'trainer_job_id',
          );
          const output = lastSegment(body.output_model, ctx.account, 'models', 'output_model');
          const name = checkpointName(ctx, job, checkpoint);
          const model = await promoteCheckpoint(
            deps,
            ctx,
            name,
            output,
            body.base_model ?? undefined,
          );
          return { model };
        },
      },
    },
  };
}

/**
 * What a deployment request may say and what a deployment looks like on the wire: the
 * create and update bodies (temper's own fields plus the ones the Fireworks SDK's
 * DeploymentManager and REST client send), the hot-load target (`hotLoadTrainerJob` = serve
 * that trainer's sampler snapshots, so the bucket is the trainer's checkpoint folder), the
 * deployment shape check, and the resource as GET returns it.
 *
 * Fields about hosted capacity (accelerators, autoscaling, speculative decoding, placement,
 * superuser knobs) are accepted and recorded or dropped: every replica here is a local CPU
 * process, and a real client that sends them must not be refused for it.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { checkpointsPrefix } from '../../checkpoints/catalog/catalog.js';
import { fileUrlToRoot } from '../../checkpoints/object-store/index.js';
import { replicaSettings } from '../../deployments/index.js';
import type { DeploymentResource } from '../../deployments/registry.js';
import type { Deps } from '../context.js';
import { invalid, notFound } from '../http/errors.js';
import { parseRef } from '../http/ids.js';
import type { RequestCtx } from '../http/router.js';
import { confineBucketUrl } from './bucket-urls.js';
import { deploymentShapeOf, TRAINING_SHAPES } from './training-shapes.js';

const counts = {
  minReplicaCount: z.number().int().min(0).max(64),
  maxReplicaCount: z.number().int().min(0).max(64),
};
/** `ASYNC` | `SYNC`; the SDK's "unspecified" spellings and '' mean the default (ASYNC). */
const transitionType = z
  .string()
  .transform((v) => v.trim().toUpperCase())
  .pipe(z.enum(['ASYNC', 'SYNC', '', 'UNSPECIFIED', 'HOT_LOAD_TRANSITION_TYPE_UNSPECIFIED']))
  .transform((v) => (v === 'SYNC' ? ('SYNC' as const) : ('ASYNC' as const)));
const stringMap = z.record(z.string(), z.string());

/** Fields a client may set that are kept with the deployment and returned by GET. */
const recorded = {
  displayName: z.string().max(200).optional(),
  description: z.string().max(2000).optional(),
  forTraining: z.boolean().optional(),
  enableHotLoad: z.boolean().optional(),
  /** Multi-LoRA: LoRA models may be loaded on it as addons (deployedModels); default false. */
  enableAddons: z.boolean().optional(),
  deploymentShape: z.string().min(1).optional(),
  acceleratorType: z.string().max(100).optional(),
  acceleratorCount: z.number().int().positive().optional(),
  annotations: stringMap.optional(),
  placement: z.looseObject({}).optional(),
  region: z.string().optional(),
};

/** Hosted-serving settings a real client may send: accepted, with no effect here. */
const IGNORED = [
  'extraArgs',
  'extraValues',
  'preemptible',
  'precision',
  'autoscalingPolicy',
  'autoTune',
  'activeModelVersion',
  'targetModelVersion',
  'deploymentTemplate',
  'directRouteApiKeys',
  'disableDeploymentSizeValidation',
  'draftModel',
  'draftTokenCount',
  'enableHotReloadLatestAddon',
  'enableMtp',
  'enableSessionAffinity',
  'expireTime',
  'maxContextLength',
  'maxWithRevocableReplicaCount',
  'ngramSpeculationLength',
  'pricingPlanId',
] as const;

export const createSchema = z.strictObject({
  ...recorded,
  baseModel: z.string().min(1),
  minReplicaCount: counts.minReplicaCount.default(0),
  maxReplicaCount: counts.maxReplicaCount.default(1),
  hotLoadBucketType: z.enum(['FW_HOSTED', 'S3', 'MINIO', 'NEBIUS']).default('FW_HOSTED'),
  hotLoadBucketUrl: z.string().min(1).optional(),
  hotLoadTrainerJob: z.string().min(1).optional(),
  hotLoadTransitionType: transitionType.default('ASYNC'),
  replica: z
    .strictObject({
      threads: replicaSettings.threads.optional(),
      maxConcurrent: replicaSettings.maxConcurrent.optional(),
      maxDecodeBatch: replicaSettings.maxDecodeBatch.optional(),
    })
    .default({}),
});
export type CreateInput = z.output<typeof createSchema>;

/** What PATCH may change (an update mask names these in snake_case). */
export const patchSchema = z.strictObject({
  displayName: recorded.displayName,
  description: recorded.description,
  annotations: recorded.annotations,
  forTraining: recorded.forTraining,
  minReplicaCount: counts.minReplicaCount.optional(),
  maxReplicaCount: counts.maxReplicaCount.optional(),
  hotLoadTrainerJob: z.string().optional(),
  hotLoadBucketUrl: z.string().min(1).optional(),
  hotLoadTransitionType: transitionType.optional(),
});
export type PatchInput = z.output<typeof patchSchema>;
const PATCHABLE = Object.keys(patchSchema.shape) as (keyof PatchInput)[];

export const scaleSchema = z.strictObject(counts);

/** The body without the fields that are accepted and ignored. */
export function withoutIgnored(body: Record<string, unknown>): Record<string, unknown> {
  const out = { ...body };
  for (const key of IGNORED) delete out[key];
  return out;
}

const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const camel = (s: string) => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

/**
 * The fields a PATCH changes: those its `updateMask` names (snake_case or camelCase, comma
 * separated; a masked field missing from the body goes back to its default), or without a
 * mask those present in the body.
 */
export function patchedFields(body: PatchInput, mask: unknown): (keyof PatchInput)[] {
  if (mask === undefined || mask === '') return PATCHABLE.filter((k) => body[k] !== undefined);
  if (typeof mask !== 'string') throw invalid('updateMask: expected a comma-separated string');
  const fields = mask.split(',').map((f) => camel(f.trim()));
  for (const f of fields)
    if (!(PATCHABLE as string[]).includes(f))
      throw invalid(
        `updateMask: '${snake(f)}' cannot be updated (updatable: ${PATCHABLE.map(snake).join(', ')})`,
      );
  return fields as (keyof PatchInput)[];
}

/** A file:// URL, or a bare path. */
export const isFileUrl = (url: string) =>
  !/^[a-z][a-z0-9+.-]*:\/\//i.test(url) || /^file:/i.test(url);

/** A folder of the checkpoint store as a URL (file:// URLs in their canonical form). */
function storeUrl(deps: Deps, prefix: string): string {
  if (!isFileUrl(deps.checkpointUrl)) return `${deps.checkpointUrl}/${prefix}`;
  return pathToFileURL(join(fileUrlToRoot(deps.checkpointUrl), prefix)).href;
}

/** The bucket a deployment owns when it names none: accounts/{a}/deployments/{id}/snapshots. */
export function ownBucket(deps: Deps, account: string, id: string): string {
  return storeUrl(deps, `accounts/${account}/deployments/${id}/snapshots`);
}

/** A bucket the caller gives: inside the caller's account folder or the operator's allow-list. */
export function givenBucket(deps: Deps, account: string, url: string): string {
  return confineBucketUrl(url, account, deps.checkpointUrl);
}

/**
 * `hotLoadTrainerJob`: a trainer job of the caller's account, whose sampler snapshots
 * (save_weights_for_sampler) the deployment then hot-loads, so its bucket is the trainer's
 * checkpoint folder. The job may be stopped or deleted; its checkpoints outlive it.
 */
export async function trainerBucket(
  deps: Deps,
  ctx: RequestCtx,
  value: string,
  baseModel: string,
): Promise<{ job: string; bucketUrl: string }> {
  const ref = parseRef(value, 'rlorTrainerJobs', ctx.account, 'hotLoadTrainerJob');
  const row =
    ref.account === ctx.account
      ? await deps.store.get<{ baseModel?: string }>('rlorTrainerJobs', ref.account, ref.id)
      : undefined;
  if (!row) throw notFound(`hotLoadTrainerJob: ${ref.name} not found`);
  if (row.body.baseModel !== undefined && row.body.baseModel !== baseModel)
    throw invalid(
      `hotLoadTrainerJob: ${ref.name} trains ${row.body.baseModel}, but this deployment serves ${baseModel}: its snapshots cannot be loaded here`,
    );
  return { job: ref.name, bucketUrl: storeUrl(deps, checkpointsPrefix(ref.account, ref.id)) };
}

const DEPLOYMENT_SHAPE =
  /^accounts\/([a-z0-9-]+)\/deploymentShapes\/([a-z0-9-]+)(?:\/versions\/([a-z0-9]+))?$/;

/**
 * A deployment shape must be one the training shapes link to (`deploymentShapeVersion` of a
 * profile), version 1 or latest, for the deployment's base model.
 */
export function checkDeploymentShape(shape: string, baseModel: string): void {
  const m = DEPLOYMENT_SHAPE.exec(shape);
  const unversioned = m ? `accounts/${m[1]}/deploymentShapes/${m[2]}` : undefined;
  const linked = TRAINING_SHAPES.filter((s) => deploymentShapeOf(s) === unversioned);
  const version = m?.[3];
  if (
    !m ||
    linked.length === 0 ||
    (version !== undefined && version !== '1' && version !== 'latest')
  ) {
    const known = [...new Set(TRAINING_SHAPES.map(deploymentShapeOf))];
    throw invalid(
      `deploymentShape: '${shape}' is not a deployment shape (known: ${known.map((k) => `${k}/versions/1`).join(', ')})`,
    );
  }
  if (!linked.some((s) => s.baseModel === baseModel))
    throw invalid(`deploymentShape: ${shape} serves ${linked[0]!.baseModel}, not ${baseModel}`);
}

/** Fields kept with a deployment in the registry (`fields`). */
export interface Recorded {
  displayName?: string;
  description?: string;
  forTraining?: boolean;
  enableHotLoad?: boolean;
  enableAddons?: boolean;
  deploymentShape?: string;
  acceleratorType?: string;
  acceleratorCount?: number;
  annotations?: Record<string, string>;
  placement?: Record<string, unknown>;
  region?: string;
  hotLoadTrainerJob?: string;
  /** The LoRA model a deployment of an adapter serves on its base. */
  model?: string;
}

/**
 * A deployment as the API returns it: the registry's resource with the Fireworks field names
 * flat (`hotLoadBucketUrl`, `hotLoadTrainerJob`, ...) next to temper's `hotLoad` block.
 */
export function renderDeployment(d: DeploymentResource) {
  const { fields, ...rest } = d;
  const f = fields as Recorded;
  return {
    ...rest,
    ...f,
    enableHotLoad: f.enableHotLoad ?? true,
    enableAddons: f.enableAddons ?? false,
    forTraining: f.forTraining ?? false,
    hotLoadBucketType: d.hotLoad.bucketType,
    hotLoadBucketUrl: d.hotLoad.bucketUrl,
    hotLoadTransitionType: d.hotLoad.transitionType,
  };
}

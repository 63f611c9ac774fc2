/**
 * `trainingShapes`: a small static catalog in the public account (accounts/temper/...), one
 * shape per way a trainer can hold a bundled model (LoRA, full parameter, forward-only
 * reference), and their resolution to a profile (`GET .../trainingShapes/{id}/versions/{v}`,
 * v = 1 or latest, and the version list) in the shape the Fireworks SDK reads: `{name,
 * snapshot: {...}}`, the settings training-api.md lists inside `snapshot`. Every shape runs on the CPU engine,
 * one node, no pipeline parallelism: the profile says so rather than inventing accelerators.
 */
import { BUNDLED_MODEL, CATALOG_ACCOUNT } from '../../catalog/bundled.js';
import { notFound } from '../http/errors.js';
import { listResponse, pageArray, parseListQuery } from '../http/paging.js';
import type { CollectionRoutes, RequestCtx } from '../http/router.js';
import { catalogModel } from './catalog.js';

export type TrainerMode = 'POLICY_TRAINER' | 'FORWARD_ONLY' | 'LORA_TRAINER';

export interface TrainingShape {
  name: string;
  displayName: string;
  baseModel: string;
  trainerMode: TrainerMode;
  supportsLora: boolean;
}

const SHAPE_VERSION = '1';

function shape(id: string, trainerMode: TrainerMode, displayName: string): TrainingShape {
  return {
    name: `accounts/${CATALOG_ACCOUNT}/trainingShapes/${id}`,
    displayName,
    baseModel: BUNDLED_MODEL.name,
    trainerMode,
    supportsLora: trainerMode === 'LORA_TRAINER',
  };
}

export const TRAINING_SHAPES: readonly TrainingShape[] = [
  shape('byte-lm-3m-lora', 'LORA_TRAINER', 'byte-lm-3m LoRA policy trainer (CPU)'),
  shape('byte-lm-3m-full', 'POLICY_TRAINER', 'byte-lm-3m full-parameter policy trainer (CPU)'),
  shape('byte-lm-3m-reference', 'FORWARD_ONLY', 'byte-lm-3m forward-only reference (CPU)'),
];

const SHAPE_REF =
  /^accounts\/([a-z0-9-]+)\/trainingShapes\/([a-z0-9-]+)(?:\/versions\/([a-z0-9]+))?$/;

/** A shape by id or name (optionally `/versions/{v}`); undefined when there is none. */
export function findShape(ref: string): TrainingShape | undefined {
  const m = SHAPE_REF.exec(ref);
  const name = m
    ? `accounts/${m[1]}/trainingShapes/${m[2]}`
    : `accounts/${CATALOG_ACCOUNT}/trainingShapes/${ref}`;
  if (m?.[3] !== undefined && m[3] !== SHAPE_VERSION && m[3] !== 'latest') return undefined;
  return TRAINING_SHAPES.find((s) => s.name === name);
}

/** The shape a job gets when it names none: by base model and LoRA vs full parameter. */
export function defaultShape(baseModel: string, mode: TrainerMode): TrainingShape | undefined {
  return TRAINING_SHAPES.find((s) => s.baseModel === baseModel && s.trainerMode === mode);
}

/**
 * The deployment shape that serves a shape's sampler snapshots (the SDK-managed service
 * creates its deployment with it): one CPU shape per bundled base model.
 */
export function deploymentShapeOf(s: TrainingShape): string {
  const model = s.baseModel.split('/').pop();
  return `accounts/${CATALOG_ACCOUNT}/deploymentShapes/${model}-cpu`;
}

export async function resolveProfile(s: TrainingShape) {
  const model = await catalogModel(s.baseModel);
  const deploymentShape = deploymentShapeOf(s);
  return {
    trainingShapeVersion: `${s.name}/versions/${SHAPE_VERSION}`,
    trainerImageTag: 'local-process',
    maxSupportedContextLength: model?.contextLength ?? null,
    nodeCount: 1,
    deploymentShapeVersion: `${deploymentShape}/versions/${SHAPE_VERSION}`,
    deploymentImageTag: 'local-process',
    acceleratorType: 'CPU',
    acceleratorCount: 1,
    baseModelWeightPrecision: 'FLOAT32',
    pipelineParallelism: 1,
    trainerMode: s.trainerMode,
    trainingShape: s.name,
    deploymentShape,
    supportsLora: s.supportsLora,
  };
}

/**
 * A shape version as the Fireworks SDK reads it (`resolve_training_profile`): the version's
 * name, and every setting inside `snapshot`.
 */
export async function shapeVersion(s: TrainingShape) {
  const p = await resolveProfile(s);
  return {
    name: p.trainingShapeVersion,
    latestValidated: true,
    snapshot: {
      trainerImageTag: p.trainerImageTag,
      maxSupportedContextLength: p.maxSupportedContextLength,
      nodeCount: p.nodeCount,
      deploymentShapeVersion: p.deploymentShapeVersion,
      deploymentImageTag: p.deploymentImageTag,
      acceleratorType: p.acceleratorType,
      acceleratorCount: p.acceleratorCount,
      baseModelWeightPrecision: p.baseModelWeightPrecision,
      trainerShardingScheme: { pipelineParallelism: p.pipelineParallelism },
      trainerMode: p.trainerMode,
      baseModel: s.baseModel,
    },
  };
}

function lookup(ctx: RequestCtx, id: string): TrainingShape {
  const name = `accounts/${ctx.account}/trainingShapes/${id}`;
  const found = TRAINING_SHAPES.find((s) => s.name === name);
  if (!found) throw notFound(`${name} not found`);
  return found;
}

async function render(s: TrainingShape) {
  return { ...s, profile: await resolveProfile(s) };
}

export function trainingShapeRoutes(): CollectionRoutes {
  return {
    collection: 'trainingShapes',
    list: async (ctx) => {
      const all = TRAINING_SHAPES.filter((s) => s.name.startsWith(`accounts/${ctx.account}/`));
      const page = pageArray(all, parseListQuery(ctx.req.query), ctx.account);
      return listResponse(
        'trainingShapes',
        await Promise.all(page.items.map(render)),
        page.nextPageToken,
      );
    },
    get: async (ctx, id) => render(lookup(ctx, id)),
    sub: [
      {
        method: 'GET',
        path: 'versions',
        // One version per shape, validated; `?filter=latest_validated=true` selects it too.
        handler: async (ctx, p) => ({
          trainingShapeVersions: [await shapeVersion(lookup(ctx, p.id ?? ''))],
          nextPageToken: '',
        }),
      },
      {
        method: 'GET',
        path: 'versions/:version',
        handler: async (ctx, p) => {
          const s = lookup(ctx, p.id ?? '');
          if (p.version !== SHAPE_VERSION && p.version !== 'latest')
            throw notFound(
              `${s.name}/versions/${p.version} not found (versions: ${SHAPE_VERSION}, latest)`,
            );
          return shapeVersion(s);
        },
      },
    ],
  };
}

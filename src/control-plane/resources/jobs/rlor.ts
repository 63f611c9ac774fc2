/**
 * `rlorTrainerJobs`: a trainer the user drives through the Training API (training-api.md).
 * Fields: baseModel (or taken from trainingShapeRef), trainingShapeRef, loraRank (0 = full
 * parameter, the default), maxContextLength, learningRate (1e-5), displayName, region,
 * forwardOnly, replicaCount, inactivityTimeout (a protobuf JSON duration such as "1800s";
 * 0 or unset = 60 minutes; stored normalised, e.g. "3600s"), disableInactivityCleanup,
 * baseDtype and recompute (the pod's engine settings, src/engine/options.ts; bfloat16 needs
 * loraRank > 0), and the manual accelerator fields (recorded; every trainer here runs on the CPU engine).
 *
 * The Fireworks SDK's body (`trainingConfig{...}`, `?trainingShape=`, hosted-only fields) is
 * flattened to this form first. `:resume` takes any stopped trainer (FAILED, CANCELLED,
 * PAUSED, COMPLETED). DELETE of a live trainer cancels it first; `:executeTrainStep` goes to the orchestrator
 * when it implements it; the checkpoint routes are in checkpoints.ts.
 */
import { z } from 'zod';
import { durationSeconds, fields as F } from '../../../recipes/index.js';
import type { Deps } from '../../context.js';
import { parseBody } from '../../http/body.js';
import { ApiError, invalid, notFound, precondition } from '../../http/errors.js';
import type { CollectionRoutes, RequestCtx } from '../../http/router.js';
import { checkpointSubRoutes } from '../checkpoints.js';
import { getRow } from '../common.js';
import { resolveModel } from '../refs.js';
import { defaultShape, findShape, type TrainerMode } from '../training-shapes.js';
import { jobRoutes } from './routes.js';
import { isFinal } from './states.js';
import { parseJobBody } from './training.js';

export const DEFAULT_INACTIVITY_SECONDS = 3600;

const rlorSchema = z.strictObject({
  displayName: z.string().max(200).optional(),
  baseModel: z.string().min(1).optional(),
  trainingShapeRef: z.string().min(1).optional(),
  loraRank: F.loraRank.trainer.schema.optional(),
  maxContextLength: F.maxContextLength.schema.optional(),
  learningRate: F.learningRate.trainer.schema.optional(),
  region: z.string().max(100).optional(),
  forwardOnly: z.boolean().optional(),
  replicaCount: z.number().int().min(1).max(64).optional(),
  /** Seconds, "1800s", "30m"; 0 = the 60-minute default; at most 30 days. */
  inactivityTimeout: durationSeconds({ min: 1, max: 30 * 86_400, allowZero: true }).optional(),
  disableInactivityCleanup: z.boolean().optional(),
  /** How the pod's engine holds the model (temper's own; the service has no such fields). */
  baseDtype: F.baseDtype.schema.optional(),
  recompute: F.recompute.schema.optional(),
  acceleratorType: z.string().max(100).optional(),
  acceleratorCount: z.number().int().positive().optional(),
  nodeCount: z.number().int().positive().optional(),
});
type RlorInput = z.output<typeof rlorSchema>;

/**
 * The body the Fireworks training SDK (TrainerJobManager) sends: the model settings nested
 * in `trainingConfig`, the shape in the `?trainingShape=` query, and fields about hosted
 * capacity (reservations, images, node pools, superuser knobs) that a local trainer has no
 * use for: those are accepted and dropped. `trainingConfig` is validated like the flat form.
 */
const sdkTrainingConfig = z.strictObject({
  baseModel: z.string().min(1).optional(),
  loraRank: F.loraRank.trainer.schema.optional(),
  learningRate: F.learningRate.trainer.schema.optional(),
  maxContextLength: F.maxContextLength.schema.optional(),
  region: z.string().max(100).optional(),
  acceleratorType: z.string().max(100).optional(),
  acceleratorCount: z.number().int().positive().optional(),
  customImageTag: z.string().optional(),
  extraArgs: z.array(z.string()).optional(),
  projectionHeadDim: z.number().int().nonnegative().optional(),
});
const SDK_IGNORED = [
  'serviceMode',
  'keepAlive',
  'dataset',
  'useReservation',
  'reservationTarget',
  'hotLoadDeploymentId',
  'extraValues',
  'purpose',
  'preemptible',
  'managedBy',
] as const;
const SDK_CONFIG_IGNORED = ['customImageTag', 'extraArgs', 'projectionHeadDim'] as const;

/** The SDK's body as the flat form: trainingConfig merged in, hosted-only fields dropped. */
function flattenSdkBody(
  body: Record<string, unknown>,
  query: Record<string, unknown>,
): Record<string, unknown> {
  const flat = { ...body };
  for (const key of SDK_IGNORED) delete flat[key];
  if (flat.trainerReplicaCount !== undefined) {
    if (flat.replicaCount !== undefined && flat.replicaCount !== flat.trainerReplicaCount)
      throw invalid('trainerReplicaCount and replicaCount disagree: give one');
    flat.replicaCount = flat.trainerReplicaCount;
    delete flat.trainerReplicaCount;
  }
  if (flat.trainingConfig !== undefined) {
    const config = parseBody(sdkTrainingConfig, flat.trainingConfig);
    delete flat.trainingConfig;
    for (const key of SDK_CONFIG_IGNORED) delete config[key];
    for (const [key, value] of Object.entries(config)) {
      if (flat[key] !== undefined && flat[key] !== value)
        throw invalid(
          `${key} is given both at the top level and in trainingConfig, with different values`,
        );
      flat[key] = value;
    }
  }
  const shape = query.trainingShape;
  if (typeof shape === 'string' && shape !== '') {
    if (flat.trainingShapeRef !== undefined && flat.trainingShapeRef !== shape)
      throw invalid('trainingShape (query) and trainingShapeRef (body) disagree: give one');
    flat.trainingShapeRef = shape;
  }
  return flat;
}

function trainerShape(input: RlorInput, baseModel: string | null, mode: TrainerMode) {
  if (input.trainingShapeRef === undefined)
    return baseModel ? defaultShape(baseModel, mode)?.name : undefined;
  const shape = findShape(input.trainingShapeRef);
  if (!shape) throw notFound(`Training shape '${input.trainingShapeRef}' not found`);
  if (baseModel && shape.baseModel !== baseModel)
    throw invalid(`trainingShapeRef: ${shape.name} is for ${shape.baseModel}, not ${baseModel}`);
  if (shape.trainerMode !== mode)
    throw invalid(
      `trainingShapeRef: ${shape.name} is a ${shape.trainerMode} shape; this trainer needs ${mode}`,
    );
  return shape.name;
}

async function build(deps: Deps, ctx: RequestCtx, body: Record<string, unknown>) {
  const input = parseJobBody(
    rlorSchema,
    flattenSdkBody(body, (ctx.req.query ?? {}) as Record<string, unknown>),
  );
  const fromShape = input.trainingShapeRef
    ? findShape(input.trainingShapeRef)?.baseModel
    : undefined;
  const requested = input.baseModel ?? fromShape;
  if (!requested) throw invalid('baseModel is required (or a trainingShapeRef that names one)');
  const model = await resolveModel(deps, ctx, requested, 'baseModel');
  if (model.kind === 'HF_PEFT_ADDON')
    throw invalid(
      `baseModel: ${model.name} is a LoRA adapter; start from its base model and load the adapter (loadAdapter)`,
    );
  const loraRank = input.loraRank ?? F.loraRank.trainer.default;
  const mode: TrainerMode = input.forwardOnly
    ? 'FORWARD_ONLY'
    : loraRank > 0
      ? 'LORA_TRAINER'
      : 'POLICY_TRAINER';
  // Refused here, not when the pod builds its model: a job that can never start leaves no row.
  const dtypeIssue = F.baseDtypeIssue(input.baseDtype, loraRank);
  if (dtypeIssue) throw invalid(dtypeIssue);
  const shape = trainerShape(input, model.root, mode);
  const limit = model.contextLength;
  if (input.maxContextLength !== undefined && limit !== null && input.maxContextLength > limit)
    throw invalid(
      `maxContextLength ${input.maxContextLength} exceeds the model's context length ${limit}`,
    );
  const { baseModel: _b, trainingShapeRef: _s, inactivityTimeout: _i, ...rest } = input;
  return {
    ...rest,
    baseModel: model.name,
    ...(shape ? { trainingShapeRef: shape } : {}),
    loraRank,
    ...(input.maxContextLength !== undefined || limit !== null
      ? { maxContextLength: input.maxContextLength ?? limit }
      : {}),
    learningRate: input.learningRate ?? F.learningRate.trainer.default,
    forwardOnly: input.forwardOnly ?? false,
    replicaCount: input.replicaCount ?? 1,
    inactivityTimeout: `${input.inactivityTimeout || DEFAULT_INACTIVITY_SECONDS}s`,
    disableInactivityCleanup: input.disableInactivityCleanup ?? false,
    baseDtype: input.baseDtype ?? F.baseDtype.default,
    recompute: input.recompute ?? F.recompute.default,
  };
}

async function executeTrainStep(deps: Deps, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, 'rlorTrainerJobs', ctx.account, id);
  const run = deps.orchestrator.executeTrainStep?.bind(deps.orchestrator);
  if (!run)
    throw new ApiError(
      'UNIMPLEMENTED',
      'executeTrainStep is not supported by this control plane: drive the trainer with the Training API (forwardBackward, optimStep) instead',
    );
  if (isFinal(row.body.state))
    throw precondition(
      `${row.name} is ${String(row.body.state)}: resume it or create a new trainer`,
    );
  const result = await run(
    { collection: 'rlorTrainerJobs', account: ctx.account, id },
    ctx.req.body ?? {},
  );
  return result ?? {};
}

export function rlorRoutes(deps: Deps): CollectionRoutes {
  return jobRoutes(deps, {
    collection: 'rlorTrainerJobs',
    singular: 'rlorTrainerJob',
    // A trainer holds no job progress of its own: whatever stopped it (a crash, deletion of
    // its pod, the inactivity timeout, a pause), resuming starts a fresh pod under the same
    // id and the client reloads its last checkpoint (TrainerJobManager.reconnect_and_wait).
    resumable: [
      'JOB_STATE_FAILED',
      'JOB_STATE_CANCELLED',
      'JOB_STATE_PAUSED',
      'JOB_STATE_COMPLETED',
    ],
    deleteActive: 'cancel',
    build: (ctx, body) => build(deps, ctx, body),
    verbs: { executeTrainStep: { handler: (ctx, id) => executeTrainStep(deps, ctx, id) } },
    sub: checkpointSubRoutes(deps),
  });
}

/**
 * Activities any worker can run (the shared task queue): reading and updating jobs in the
 * store, promotion, and claiming a host. They hold no per-job state, so Temporal may retry
 * them anywhere.
 */
import { createHash } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { CheckpointError } from '../../checkpoints/dcp/errors.js';
import type { ObjectStore } from '../../checkpoints/object-store/index.js';
import { MODEL_FILE, type PromotedModel, promoteCheckpoint } from '../../checkpoints/promotion.js';
import { parseDataset, renderSamples } from '../../datasets/index.js';
import { checkEvaluator } from '../../evaluators/index.js';
import { resolveRlLossMethod } from '../../losses/index.js';
import { FINAL_STATES } from '../../orchestration/jobs.js';
import { fields as F } from '../../recipes/index.js';
import type { Store } from '../../store/index.js';
import type { Renderer } from '../../tokenizers/index.js';
import { parseDuration } from '../../trainer/duration.js';
import type {
  ControlActivities,
  JobRef,
  JobStatusUpdate,
  ModelSummary,
  PromoteInput,
  RftSettings,
  TrainerJobSpec,
  TrainingPlan,
} from '../types.js';
import { FAILURE, workflowIdOf } from '../types.js';
import { podJobIdBase, withHeartbeats } from './host-support.js';
import { rftJobFieldsSchema, trainerJobBodySchema, trainingJobBodySchema } from './job-body.js';
import { cachedJobData, modelRenderer, readDatasetText } from './job-data.js';
import { type Body, checkpointHistory, jobEnded, updateLiveJob } from './job-rows.js';
import { JobTracking } from './job-tracking.js';
import { modelContextLength, resolveModel } from './models.js';
import { buildRftData } from './rft.js';

export interface ControlDeps {
  store: Store;
  /** Uploaded datasets and other artifacts. */
  artifacts: ObjectStore;
  /** Checkpoints and promoted models. */
  checkpoints: ObjectStore;
  /** This worker's host task queue (what claimHost answers). */
  hostQueue: string;
}

const TERMINAL = new Set(['JOB_STATE_COMPLETED', 'JOB_STATE_CANCELLED', 'JOB_STATE_EARLY_STOPPED']);

const METHODS = {
  supervisedFineTuningJobs: 'sft',
  dpoJobs: 'dpo',
  orpoJobs: 'orpo',
  reinforcementFineTuningJobs: 'rft',
} as const;

/** `x`, `accounts/{a}/evaluators/x` → [account, id] (a bare id is the job's account's). */
function evaluatorRef(name: string, account: string): [string, string] {
  const parts = name.split('/');
  return parts.length === 4 ? [parts[1]!, parts[3]!] : [account, name];
}

function rftSettings(body: unknown): RftSettings {
  const parsed = rftJobFieldsSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw invalid(`invalid job: ${issue.path.join('.') || '(job)'}: ${issue.message}`);
  }
  const f = parsed.data;
  // The method and its KL beta, checked by the loss's own rules (and its words).
  try {
    resolveRlLossMethod({ method: f.rlLossMethod, klBeta: f.rlKlBeta });
  } catch (error) {
    throw invalid(`invalid job: ${(error as Error).message}`);
  }
  return {
    evaluator: f.evaluator,
    chunkSize: f.chunkSize,
    n: f.responseCandidatesCount ?? f.n ?? F.responseCandidatesCount.default,
    temperature: f.temperature,
    topP: f.topP,
    topK: f.topK,
    maxTokens: f.maxTokens,
    maxConcurrentRollouts: f.maxConcurrentRollouts,
    rolloutTimeoutMs: f.rolloutTimeout * 1000,
    lossMethod: f.rlLossMethod,
    klBeta: f.rlKlBeta,
    remoteServerUrl: f.remoteServerUrl ?? null,
  };
}

function invalid(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, FAILURE.jobInvalid);
}

/** A data-order seed derived from the job name when the job gives none. */
function nameSeed(name: string): number {
  return createHash('sha256').update(name).digest().readUInt32BE(0);
}

export function createControlActivities(deps: ControlDeps): ControlActivities {
  const { store } = deps;
  const tracking = new JobTracking(store, deps.checkpoints);

  /** The job's body with `update` applied (its state, status and, at the end, its end time). */
  function withStatus(body: Body, update: JobStatusUpdate): Body {
    return {
      ...body,
      ...update.fields,
      state: update.state,
      status: {
        code: update.state === 'JOB_STATE_FAILED' ? 'ERROR' : 'OK',
        message: update.message ?? '',
      },
      ...(TERMINAL.has(update.state) || update.state === 'JOB_STATE_FAILED'
        ? { completedTime: new Date().toISOString() }
        : {}),
    };
  }

  /** Writes a state that does not end the job, unless it ended; false when it had. */
  const writeJobStatus = (ref: JobRef, update: JobStatusUpdate) =>
    updateLiveJob(store, ref, (body) => withStatus(body, update));

  /**
   * Writes the job's state unless the job already ended (then nothing changes): a late write
   * from a run that had not yet noticed a cancel must not revive the job. A refused write is
   * not an error to retry: the job's end is already recorded.
   *
   * A final state ends the job's MLflow run (a no-op without one) first, with the body about
   * to be written, so whoever sees the job ended finds its run ended, with its artifacts.
   */
  async function setJobStatus(ref: JobRef, update: JobStatusUpdate): Promise<void> {
    if (FINAL_STATES.includes(update.state)) {
      const row = await store.get<Body>(ref.collection, ref.account, ref.id);
      if (!row || FINAL_STATES.includes(String(row.body.state))) return;
      await tracking.finish(ref, update.state, withStatus(row.body, update));
    }
    await writeJobStatus(ref, update);
  }

  async function prepareTrainingJob(ref: JobRef): Promise<TrainingPlan> {
    if (ref.collection === 'rlorTrainerJobs')
      throw invalid(`prepareTrainingJob: ${ref.collection} are not managed training jobs`);
    const row = await store.get<Record<string, unknown>>(ref.collection, ref.account, ref.id);
    if (!row) throw invalid(`job ${workflowIdOf(ref)} does not exist`);
    if (typeof row.body.state === 'string' && TERMINAL.has(row.body.state))
      throw invalid(`job ${workflowIdOf(ref)} already ended (${row.body.state})`);
    if (!(await writeJobStatus(ref, { state: 'JOB_STATE_VALIDATING' }))) throw jobEnded(ref);
    const parsed = trainingJobBodySchema.safeParse(row.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw invalid(`invalid job: ${issue.path.join('.') || '(job)'}: ${issue.message}`);
    }
    const body = parsed.data;
    const rft = ref.collection === 'reinforcementFineTuningJobs' ? rftSettings(row.body) : null;
    if (rft && !(await store.get('evaluators', ...evaluatorRef(rft.evaluator, ref.account))))
      throw invalid(`Evaluator '${rft.evaluator.split('/').pop()}' not found in account`);
    // A tampered, incomplete or unrunnable evaluator fails the job before any pod starts.
    if (rft) {
      const [account, id] = evaluatorRef(rft.evaluator, ref.account);
      await checkEvaluator(`accounts/${account}/evaluators/${id}`, {
        store,
        artifacts: deps.artifacts,
      }).catch((error: Error) => {
        throw invalid(error.message);
      });
    }
    const modelName = (body.warmStartFrom ?? body.baseModel)!;
    let plan: TrainingPlan;
    let evaluationExamples = 0;
    try {
      const model = await resolveModel(modelName, deps.checkpoints.url);
      const baseDir = model.adapter?.baseDir ?? model.dir;
      const contextLimit = await modelContextLength(baseDir);
      const maxContextLength = Math.min(body.maxContextLength ?? contextLimit, contextLimit);
      const loraRank = model.adapter ? Math.max(body.loraRank, 1) : body.loraRank;
      plan = {
        method: METHODS[ref.collection],
        jobName: workflowIdOf(ref),
        account: ref.account,
        baseModel: model.adapter?.baseModel ?? modelName,
        warmStartFrom: body.warmStartFrom ?? null,
        dataset: body.dataset,
        evaluationDataset: body.evaluationDataset ?? null,
        outputModelId: (body.outputModel ?? ref.id).split('/').pop()!,
        loraRank,
        maxContextLength,
        batchTokens: body.batchSize ?? F.batchSize[rft ? 'rft' : 'job'].default,
        epochs: body.epochs,
        learningRate:
          body.learningRate ??
          (rft ? F.learningRate.rft.default : F.learningRate.job.default(loraRank)),
        warmupSteps: body.learningRateWarmupSteps,
        gradientAccumulationSteps: body.gradientAccumulationSteps,
        checkpointEvery: body.checkpointFrequency,
        beta: body.beta,
        orpoLambda: body.orpoLambda,
        seed: body.seed || nameSeed(workflowIdOf(ref)),
        engine: { baseDtype: body.baseDtype, recompute: body.recompute },
        totalSteps: 0,
        exampleCount: 0,
        maxTrainerRestarts: 5,
        resumeFrom: body.lastCheckpoint ?? null,
        checkpointHistory: body.lastCheckpoint ? checkpointHistory(row.body) : [],
        podJobIdBase: podJobIdBase(workflowIdOf(ref)),
        firstPodAttempt: Array.isArray(row.body.trainerJobIds) ? row.body.trainerJobIds.length : 0,
        rft,
        tracking: body.mlflowTrackingUri
          ? {
              mlflowTrackingUri: body.mlflowTrackingUri,
              mlflowExperimentName: body.mlflowExperimentName ?? F.mlflowExperimentNameDefault,
              mlflowRunName: body.mlflowRunName ?? null,
            }
          : null,
      };
      const text = await readDatasetText(body.dataset, deps.artifacts);
      const renderer = await modelRenderer(baseDir);
      const evalText = plan.evaluationDataset
        ? await readDatasetText(plan.evaluationDataset, deps.artifacts)
        : null;
      if (plan.rft) {
        const data = buildRftData({ ...plan, rft: plan.rft }, text, renderer, evalText);
        plan.totalSteps = data.steps.length;
        plan.exampleCount = data.prompts.length;
        evaluationExamples = data.evalPrompts.length;
      } else {
        const data = cachedJobData(plan.jobName, plan, text, renderer, evalText);
        plan.totalSteps = data.steps.length;
        plan.exampleCount = data.units.length;
        // DPO holds out pairs: two datums each.
        evaluationExamples = plan.method === 'sft' ? data.eval.length : data.eval.length / 2;
        if (plan.method === 'sft') await keepRenderSamples(plan, text, renderer);
      }
    } catch (error) {
      if (error instanceof ApplicationFailure) throw error;
      throw invalid((error as Error).message);
    }
    // Nothing to train (a sliver of an epoch over what is left after the held-out split): the
    // job must fail, not "complete" and promote the untrained model.
    if (plan.totalSteps === 0)
      throw invalid(
        `the job has no training steps: ${plan.epochs} epochs of ${plan.exampleCount} training examples trains none; raise epochs`,
      );
    // Cancelled meanwhile (heartbeats carry the request here): nothing more to do.
    const { cancellationSignal } = Context.current();
    if (cancellationSignal.aborted) throw cancellationSignal.reason;
    const running = await writeJobStatus(ref, {
      state: 'JOB_STATE_RUNNING',
      fields: {
        jobProgress: { step: 0, totalSteps: plan.totalSteps, percent: 0 },
        exampleCount: plan.exampleCount,
        evaluationExampleCount: evaluationExamples,
        startTime: new Date().toISOString(),
      },
    });
    if (!running) throw jobEnded(ref);
    return plan;
  }

  /** Up to 20 rendered records (tokens, weights, targets) for users to check the rendering. */
  async function keepRenderSamples(plan: TrainingPlan, text: string, renderer: Renderer) {
    const rows = parseDataset('sft', text).rows;
    const samples = renderSamples(rows, renderer, { maxContextLength: plan.maxContextLength });
    await deps.artifacts.put(
      `${plan.jobName}/render-samples.jsonl`,
      samples.map((r) => JSON.stringify(r)).join('\n'),
    );
  }

  async function promote(input: PromoteInput): Promise<ModelSummary> {
    let model: PromotedModel;
    try {
      model = await promoteCheckpoint(deps.checkpoints, {
        name: input.checkpoint,
        outputModelId: input.outputModelId,
        ...(input.baseModel ? { baseModel: input.baseModel } : {}),
      });
    } catch (error) {
      // A retried promotion finds its own earlier commit: same source, same model.
      const existing = await existingPromotion(input);
      if (!existing) throw asActivityFailure(error);
      model = existing;
    }
    const body = { ...model, ...(input.sourceJob ? { sourceJob: input.sourceJob } : {}) };
    if (!(await store.get('models', input.account, input.outputModelId)))
      await store.create('models', input.account, input.outputModelId, body);
    return { name: model.name, kind: model.kind, state: model.state };
  }

  async function existingPromotion(input: PromoteInput): Promise<PromotedModel | undefined> {
    const key = `accounts/${input.account}/models/${input.outputModelId}/${MODEL_FILE}`;
    try {
      const model = JSON.parse((await deps.checkpoints.get(key)).toString('utf8')) as PromotedModel;
      return model.sourceCheckpoint === input.checkpoint ? model : undefined;
    } catch {
      return undefined;
    }
  }

  async function prepareTrainerJob(ref: JobRef): Promise<TrainerJobSpec> {
    const row = await store.get<Record<string, unknown>>(ref.collection, ref.account, ref.id);
    if (!row) throw invalid(`trainer job ${workflowIdOf(ref)} does not exist`);
    const parsed = trainerJobBodySchema.safeParse(row.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw invalid(`invalid trainer job: ${issue.path.join('.') || '(job)'}: ${issue.message}`);
    }
    const b = parsed.data;
    if (!(await writeJobStatus(ref, { state: 'JOB_STATE_CREATING' }))) throw jobEnded(ref);
    const seconds =
      b.inactivityTimeout === undefined ? 3600 : parseDuration(b.inactivityTimeout) / 1000;
    return {
      jobName: workflowIdOf(ref),
      account: ref.account,
      jobId: ref.id,
      baseModel: b.baseModel,
      loraRank: b.loraRank,
      forwardOnly: b.forwardOnly,
      inactivityTimeoutMs: b.disableInactivityCleanup ? 0 : (seconds || 3600) * 1000,
      engine: { baseDtype: b.baseDtype, recompute: b.recompute },
    };
  }

  return {
    prepareTrainerJob,
    // Reading the dataset and counting steps can take a while: heartbeats let a cancel reach it.
    prepareTrainingJob: (ref) => withHeartbeats(() => prepareTrainingJob(ref)),
    setJobStatus,
    claimHost: async () => deps.hostQueue,
    promoteCheckpoint: promote,
  };
}

/** Checkpoint errors are caller mistakes or bad data (bad id, not promotable, taken): no retry. */
function asActivityFailure(error: unknown): unknown {
  if (error instanceof CheckpointError)
    return ApplicationFailure.nonRetryable(error.message, `CheckpointError.${error.code}`);
  return error;
}

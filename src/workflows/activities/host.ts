/**
 * Activities that run on the host owning a job's trainer pod (the host's own task queue):
 * launch the pod, train segments of steps, export the final weights, stop the pod (and, from
 * trainer-jobs.ts, the activities of rlorTrainerJobs).
 *
 * The worker keeps one open Training API session per pod in memory; a worker that restarted
 * reattaches to a still-running pod by its job id and model id. Training data is rebuilt from
 * the dataset on first use and cached per job (see job-data.ts: deterministic per plan).
 * SFT, DPO and ORPO segments are the recipes' supervised steps (src/recipes
 * trainSupervisedSteps), the code the sft/dpo/orpo recipes' `run()` loops call.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Evaluate } from '../../evaluators/index.js';
import { resolveRlLossMethod } from '../../losses/index.js';
import { attachReferenceLogprobs, trainSupervisedSteps } from '../../recipes/index.js';
import { ServiceClient } from '../../sdk/service-client.js';
import { TrainerError } from '../../trainer/errors.js';
import {
  FAILURE,
  type FinishInput,
  type HostActivities,
  type RftSettings,
  type SegmentInput,
  type SegmentResult,
  type TrainerHandle,
  type TrainingPlan,
} from '../types.js';
import {
  cached,
  type HostDeps,
  learningRateAt,
  logBackgroundError,
  POD_INACTIVITY_MS,
  podBaseModel,
  podJobId,
  type Session,
  supervisedSettings,
  withHeartbeats,
} from './host-support.js';
import { cachedJobData, type JobData, modelRenderer, readDatasetText } from './job-data.js';
import { JobEvaluators } from './job-evaluators.js';
import { checkpointHistory, jobEnded, refOf, updateLiveJob } from './job-rows.js';
import { JobTracking, type TrackingClaim } from './job-tracking.js';
import { resolveModel } from './models.js';
import { buildRftData, evalReward, type RftData, runRftStep } from './rft.js';
import { createTrainerJobActivities } from './trainer-jobs.js';
import { recordRolloutTokens, recordTrainingUsage } from './usage.js';

export function createHostActivities(deps: HostDeps): HostActivities {
  const sessions = new Map<string, Session>();
  const data = new Map<string, Promise<JobData>>();
  const tracking = new JobTracking(deps.store);

  /** Where the job's weights come from, resolved once per job and process. */
  const sources = new Map<
    string,
    Promise<{
      baseModel: string;
      baseModelName?: string;
      baseDir: string;
      adapterDir: string | null;
    }>
  >();
  function modelSource(plan: TrainingPlan) {
    return cached(sources, plan.jobName, async () => {
      const model = await resolveModel(plan.warmStartFrom ?? plan.baseModel, deps.checkpointUrl);
      const baseDir = model.adapter?.baseDir ?? model.dir;
      // A warm start trains on the started-from weights, whatever the plan's base model says.
      const pod = plan.warmStartFrom
        ? { baseModel: baseDir }
        : podBaseModel(model.adapter?.baseModel ?? plan.baseModel, baseDir);
      return { ...pod, baseDir, adapterDir: model.adapter ? model.dir : null };
    });
  }

  async function open(
    plan: TrainingPlan,
    trainer: Pick<TrainerHandle, 'podJobId'>,
    modelId?: string,
  ) {
    const source = await modelSource(plan);
    const service = ServiceClient.fromConfig(
      {
        baseModel: source.baseModel,
        loraRank: plan.loraRank,
        trainerJobId: trainer.podJobId,
        account: plan.account,
        checkpointUrl: deps.checkpointUrl,
        // RFT rolls out through a deployment of its own that serves the current weights.
        ...(plan.rft
          ? {
              createDeployment: true,
              deploymentId: `${trainer.podJobId}-rollouts`,
              replicaCount: 1,
              cleanupDeploymentOnClose: 'delete' as const,
              ...(deps.threads ? { threads: deps.threads } : {}),
            }
          : {}),
      },
      {
        launcher: deps.launcher,
        deployments: deps.deployments,
        onBackgroundError: logBackgroundError,
      },
    );
    const client = await service.createTrainingClient(modelId ? { modelId } : {});
    const session = { service, client };
    sessions.set(trainer.podJobId, session);
    return { session, source };
  }

  async function session(plan: TrainingPlan, trainer: TrainerHandle): Promise<Session> {
    const existing = sessions.get(trainer.podJobId);
    if (existing) return existing;
    return (await open(plan, trainer, trainer.modelId)).session;
  }

  const rftCache = new Map<string, Promise<RftData>>();
  function rftData(plan: TrainingPlan & { rft: RftSettings }): Promise<RftData> {
    return cached(rftCache, plan.jobName, async () => {
      const { baseDir } = await modelSource(plan);
      const text = await readDatasetText(plan.dataset, deps.artifacts);
      const evalText = plan.evaluationDataset
        ? await readDatasetText(plan.evaluationDataset, deps.artifacts)
        : null;
      return buildRftData(plan, text, await modelRenderer(baseDir), evalText);
    });
  }

  function jobData(plan: TrainingPlan): Promise<JobData> {
    return cached(data, plan.jobName, async () => {
      const { baseDir } = await modelSource(plan);
      const text = await readDatasetText(plan.dataset, deps.artifacts);
      const evalText = plan.evaluationDataset
        ? await readDatasetText(plan.evaluationDataset, deps.artifacts)
        : null;
      return cachedJobData(plan.jobName, plan, text, await modelRenderer(baseDir), evalText);
    });
  }

  function launchTrainer(plan: TrainingPlan, attempt: number): Promise<TrainerHandle> {
    return withHeartbeats(() => launch(plan, attempt));
  }

  async function launch(plan: TrainingPlan, attempt: number): Promise<TrainerHandle> {
    const jobId = podJobId(plan.jobName, attempt);
    // Pods of earlier attempts still running on this host (an activity failed, not its pod)
    // and one left by an earlier try of this very activity are replaced, not reused.
    for (let k = 0; k <= attempt; k++) {
      const old = podJobId(plan.jobName, k);
      sessions.delete(old);
      await deps.launcher.stop(old).catch(() => undefined);
    }
    const source = await modelSource(plan);
    await deps.launcher.launch({
      baseModel: source.baseModel,
      ...(source.baseModelName ? { baseModelName: source.baseModelName } : {}),
      loraRank: plan.loraRank,
      jobId,
      account: plan.account,
      checkpointUrl: deps.checkpointUrl,
      displayName: plan.jobName,
      // A pod whose worker died unnoticed stops by itself.
      inactivityTimeoutMs: POD_INACTIVITY_MS,
      ...(plan.engine ? { engine: plan.engine } : {}),
      ...(deps.threads ? { threads: deps.threads } : {}),
    });
    try {
      const { session: s } = await open(plan, { podJobId: jobId });
      if (source.adapterDir) await s.client.loadAdapter(source.adapterDir);
      // Cancelled while the pod started: the workflow holds no handle to it, so it goes here.
      const { cancellationSignal } = Context.current();
      if (cancellationSignal.aborted) throw cancellationSignal.reason;
      // The job's MLflow run (when it has one) opens with its params as the job starts.
      await tracking.start(plan);
      await updateJob(plan, (body) => ({
        trainerHost: deps.hostQueue,
        trainerJobId: jobId,
        // Every pod the job ran on: where its checkpoints are (GET .../{job}/checkpoints).
        trainerJobIds: [
          ...new Set([...(Array.isArray(body.trainerJobIds) ? body.trainerJobIds : []), jobId]),
        ],
      }));
      return { podJobId: jobId, modelId: s.client.modelId, hostQueue: deps.hostQueue };
    } catch (error) {
      await stopTrainer(jobId).catch(() => undefined);
      throw error;
    }
  }

  /**
   * DPO reference logprobs (training pairs, then held-out pairs): computed once from the
   * starting weights (the frozen reference the recipes' dpo loop uses too) and kept in
   * artifacts, so a relaunched pod whose weights already moved attaches the same ones.
   */
  async function attachReferences(plan: TrainingPlan, s: Session, job: JobData, fresh: boolean) {
    const key = `${plan.jobName}/reference-logprobs.json`;
    const datums = [...job.units.flat(), ...job.eval];
    let known: number[][] | undefined;
    if (await deps.artifacts.stat(key))
      known = JSON.parse((await deps.artifacts.get(key)).toString('utf8')) as number[][];
    else if (!fresh)
      throw new Error(
        `${plan.jobName}: reference logprobs are missing and the weights already moved`,
      );
    const ref = await attachReferenceLogprobs(datums, (d) => s.client.forward(d), known);
    if (!known) await deps.artifacts.put(key, JSON.stringify(ref));
  }

  async function trainSegment(input: SegmentInput): Promise<SegmentResult> {
    return withHeartbeats(() => runSegment(input));
  }

  async function runSegment(input: SegmentInput): Promise<SegmentResult> {
    const { plan } = input;
    const s = await session(plan, input.trainer);
    if (input.restoreFrom) await restore(s, input.restoreFrom);
    const start = new Date();
    const result = plan.rft
      ? await runRftSegment(input, { ...plan, rft: plan.rft }, s)
      : await runSupervisedSegment(input, s);
    await recordTrainingUsage(deps.store, {
      id: `${plan.jobName}/${input.trainer.podJobId}/steps-${input.fromStep}-${result.step}`,
      account: plan.account,
      source: plan.jobName,
      baseModel: plan.baseModel,
      modelDir: (await modelSource(plan)).baseDir,
      start,
      end: new Date(),
    });
    if (input.save && !result.earlyStop) {
      result.checkpoint = (await s.client.saveState(`step-${result.step}`)).path;
      // A servable export beside it: a cancelled job keeps this as its model. (At the end,
      // the final export is that.)
      if (result.step < plan.totalSteps)
        result.samplerCheckpoint = (
          await s.client.saveWeightsForSampler(`step-${result.step}-weights`, {
            checkpointType: 'base',
          })
        ).name;
      const saved = { checkpoint: result.checkpoint, step: result.step };
      await updateJob(plan, (body) => ({
        lastCheckpoint: saved,
        // Every resumable checkpoint, oldest first: when the newest fails verification, a
        // restore (or :resume) falls back to the one before it.
        checkpointHistory: [...checkpointHistory(body).filter((c) => c.step < saved.step), saved],
      }));
    }
    return result;
  }

  /**
   * Restores a resumable checkpoint into the pod. One that fails verification (a damaged or
   * missing shard: the pod answers DATA_LOSS, and its model is left as it was, since shards
   * are verified before anything is applied) is not worth retrying: the workflow is told so
   * by a failure of its own type and restores an older checkpoint instead.
   */
  async function restore(s: Session, checkpoint: string): Promise<void> {
    try {
      await s.client.loadStateWithOptimizer(checkpoint);
    } catch (error) {
      if (error instanceof TrainerError && error.code === 'checkpoint_corrupt')
        throw ApplicationFailure.nonRetryable(error.message, FAILURE.checkpointCorrupt, {
          checkpoint,
        });
      throw error;
    }
  }

  const evaluators = new JobEvaluators(deps);

  function runRftSegment(
    input: SegmentInput,
    plan: TrainingPlan & { rft: RftSettings },
    s: Session,
  ): Promise<SegmentResult> {
    return evaluators.use(plan, input.trainer.podJobId, (evaluate) =>
      runRftSteps(input, plan, s, evaluate),
    );
  }

  async function runRftSteps(
    input: SegmentInput,
    plan: TrainingPlan & { rft: RftSettings },
    s: Session,
    evaluate: Evaluate,
  ): Promise<SegmentResult> {
    const ctx = Context.current();
    const data = await rftData(plan);
    const klBeta = resolveRlLossMethod({
      method: plan.rft.lossMethod,
      klBeta: plan.rft.klBeta,
    }).klBeta;
    if (klBeta > 0) s.reference ??= s.service.createReferenceClient();
    const reference = klBeta > 0 ? await s.reference! : null;
    let lastLoss: number | null = null;
    for (let step = input.fromStep; step < input.toStep; step++) {
      if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
      const snapshot = await s.client.saveWeightsForSampler(`rollout-${step}`);
      const sampler = await s.service.createDeploymentSampler({ modelPath: snapshot.uri });
      const remote = plan.rft.remoteServerUrl
        ? {
            tracer: deps.tracer,
            gatewayUrl: rolloutGateway(plan, s),
            gatewayHeaders: deps.deployments.authHeaders(
              `accounts/${plan.account}/deployments/${s.service.deploymentId}`,
            ),
          }
        : null;
      const rolloutStart = new Date();
      const { values, rollouts, tokens } = await runRftStep(
        {
          plan,
          data,
          policy: s.client,
          reference,
          sampler,
          evaluate,
          learningRate: learningRateAt(plan, step),
          remote,
        },
        step,
      );
      lastLoss = values['loss:mean'] ?? null;
      await recordRolloutTokens(deps.store, {
        id: `${plan.jobName}/${input.trainer.podJobId}/rollouts-${step + 1}`,
        account: plan.account,
        source: plan.jobName,
        baseModel: plan.baseModel,
        start: rolloutStart,
        end: new Date(),
        promptTokens: tokens.prompt,
        completionTokens: tokens.completion,
      });
      await deps.artifacts.put(
        `${plan.jobName}/rollouts/step-${String(step + 1).padStart(6, '0')}.jsonl`,
        rollouts.map((r) => JSON.stringify(r)).join('\n'),
      );
      // Eval reward of the updated weights at the end of every segment.
      if (step + 1 === input.toStep && data.evalPrompts.length > 0) {
        const evalSnapshot = await s.client.saveWeightsForSampler(`eval-${step + 1}`);
        const evalSampler = await s.service.createDeploymentSampler({
          modelPath: evalSnapshot.uri,
        });
        values['eval_reward:mean'] = await evalReward(
          { plan, sampler: evalSampler, evaluate },
          data.evalPrompts,
        );
      }
      await flush(plan, [{ step: step + 1, values, time: new Date().toISOString() }], step + 1);
      ctx.heartbeat({ step: step + 1 });
      if (data.steps[step]!.endsEpoch && (await epochScoredUniformly(plan, data, step))) {
        return { step: step + 1, checkpoint: null, lastLoss, earlyStop: true };
      }
    }
    return { step: input.toStep, checkpoint: null, lastLoss };
  }

  /** The gateway URL of the job's rollout deployment. */
  function rolloutGateway(plan: TrainingPlan, s: Session): string {
    const url = deps.deployments.get(
      `accounts/${plan.account}/deployments/${s.service.deploymentId}`,
    ).gatewayUrl;
    if (!url) throw new Error(`the rollout deployment of ${plan.jobName} has no gateway`);
    return url;
  }

  /** Every rollout of the epoch ending at `step` got the same score (read back from metrics). */
  async function epochScoredUniformly(plan: TrainingPlan, data: RftData, step: number) {
    const epoch = data.steps[step]!.epoch;
    const first = data.steps.findIndex((x) => x.epoch === epoch);
    const rows = await deps.store.listMetrics(plan.jobName, {
      afterStep: first,
      limit: step + 1 - first,
    });
    const lows = rows.map((r) => r.values['reward:min']);
    const highs = rows.map((r) => r.values['reward:max']);
    return rows.length === step + 1 - first && [...lows, ...highs].every((v) => v === lows[0]);
  }

  async function runSupervisedSegment(input: SegmentInput, s: Session): Promise<SegmentResult> {
    const { plan } = input;
    const ctx = Context.current();
    const job = await jobData(plan);
    if (plan.method === 'dpo')
      await attachReferences(plan, s, job, input.fromStep === 0 && !input.restoreFrom);
    const rows: { step: number; values: Record<string, number>; time: string }[] = [];
    let lastLoss: number | null = null;
    // Progress reaches the store at most every second (and at the end): a write per step
    // would cost more than a small model's step.
    let flushedAt = Date.now();
    // The recipes' own steps (src/recipes): a managed job is its recipe run in segments.
    await trainSupervisedSteps(
      supervisedSettings(plan),
      s.client,
      { batches: (step) => job.steps[step]!, eval: job.eval },
      { from: input.fromStep, to: input.toStep, signal: ctx.cancellationSignal },
      async (step, values) => {
        lastLoss = values['loss:mean']!;
        rows.push({ step, values, time: new Date().toISOString() });
        ctx.heartbeat({ step });
        if (Date.now() - flushedAt >= 1_000 || step === input.toStep) {
          await flush(plan, rows.splice(0), step);
          flushedAt = Date.now();
        }
      },
    );
    return { step: input.toStep, checkpoint: null, lastLoss };
  }

  /**
   * Metrics and progress to the store, so `get` and `--wait` see the job move; the same row
   * update claims the rows' steps for the job's MLflow run (if any), which gets them after.
   */
  async function flush(
    plan: TrainingPlan,
    rows: { step: number; values: Record<string, number>; time: string }[],
    step: number,
  ) {
    await deps.store.putMetrics(plan.jobName, rows);
    let claimed: TrackingClaim | undefined;
    await updateJob(plan, (body) => {
      const c = tracking.claim(plan, body, rows);
      claimed = c?.claim;
      return {
        ...c?.fields,
        jobProgress: {
          step,
          totalSteps: plan.totalSteps,
          percent: Math.round((100 * step) / Math.max(plan.totalSteps, 1)),
          loss: rows.at(-1)?.values['loss:mean'] ?? null,
        },
      };
    });
    if (claimed) await tracking.send(plan, claimed);
  }

  /** Merges fields (or what `fields` makes of the current body) into the job's row. */
  async function updateJob(
    plan: TrainingPlan,
    fields: Record<string, unknown> | ((body: Record<string, unknown>) => Record<string, unknown>),
  ) {
    const ref = refOf(plan.jobName);
    const written = await updateLiveJob(deps.store, ref, (body) => ({
      ...body,
      ...(typeof fields === 'function' ? fields(body) : fields),
    }));
    // The job ended under this activity (cancelled, say): its work is nobody's anymore.
    if (!written) throw jobEnded(ref);
  }

  async function exportFinalWeights(input: FinishInput): Promise<string> {
    const s = await session(input.plan, input.trainer);
    const saved = await s.client.saveWeightsForSampler('final', { checkpointType: 'base' });
    return saved.name;
  }

  async function stopTrainer(jobId: string): Promise<void> {
    const s = sessions.get(jobId);
    sessions.delete(jobId);
    await evaluators.podStopped(jobId);
    // Closing the service deletes an RFT job's rollout deployment; the pod stops below.
    await s?.service.close({ cleanupTrainerOnClose: false }).catch(() => undefined);
    await deps.launcher.stop(jobId);
  }

  return {
    launchTrainer,
    trainSegment,
    exportFinalWeights,
    stopTrainer,
    ...createTrainerJobActivities(deps),
  };
}

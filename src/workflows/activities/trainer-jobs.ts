/**
 * Host activities of rlorTrainerJobs (trainers the user drives through the Training API):
 * launch the job's pod, supervise it until it ends, and run `:executeTrainStep` on it.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { ServiceClient } from '../../sdk/service-client.js';
import type { TrainingClient } from '../../sdk/training-client.js';
import { StoreError } from '../../store/index.js';
import type {
  HostActivities,
  TrainerExit,
  TrainerJobSpec,
  TrainStepRequest,
  TrainStepResult,
} from '../types.js';
import {
  cached,
  type HostDeps,
  logBackgroundError,
  podBaseModel,
  withHeartbeats,
} from './host-support.js';
import { jobEnded, updateLiveJob } from './job-rows.js';
import { resolveModel } from './models.js';
import { recordTrainingUsage, TRAINER_USAGE } from './usage.js';

type TrainerJobActivities = Pick<
  HostActivities,
  'launchTrainerJob' | 'executeTrainStep' | 'superviseTrainer'
>;

export function createTrainerJobActivities(deps: HostDeps): TrainerJobActivities {
  async function launchTrainerJob(spec: TrainerJobSpec): Promise<{ address: string }> {
    return withHeartbeats(async () => {
      const model = await resolveModel(spec.baseModel, deps.checkpointUrl);
      if (model.adapter)
        throw new Error(`${spec.baseModel} is a LoRA adapter; start from its base model`);
      // A resumed job reuses its id: whatever is left of the previous pod goes first.
      await deps.launcher.stop(spec.jobId).catch(() => undefined);
      const endpoint = await deps.launcher.launch({
        ...podBaseModel(spec.baseModel, model.dir),
        loraRank: spec.loraRank,
        forwardOnly: spec.forwardOnly,
        jobId: spec.jobId,
        account: spec.account,
        checkpointUrl: deps.checkpointUrl,
        displayName: spec.jobName,
        inactivityTimeoutMs: spec.inactivityTimeoutMs,
        ...(spec.engine ? { engine: spec.engine } : {}),
        ...(deps.threads ? { threads: deps.threads } : {}),
      });
      // The token is written here, where it is made, rather than returned: an activity's
      // result is kept in the workflow's history in clear. The store seals it at rest.
      const ref = { collection: 'rlorTrainerJobs', account: spec.account, id: spec.jobId } as const;
      const kept = await updateLiveJob(deps.store, ref, (body) => ({
        ...body,
        trainerToken: endpoint.token,
      })).catch(async (error: unknown) => {
        // A pod nobody can reach is of no use: it goes, whatever kept its token out.
        await deps.launcher.stop(spec.jobId).catch(() => undefined);
        // No secrets key to seal the token: a retry would fail the same way.
        if (error instanceof StoreError && error.code === 'failed_precondition')
          throw ApplicationFailure.nonRetryable(error.message, 'StoreError');
        throw error;
      });
      if (!kept) {
        await deps.launcher.stop(spec.jobId).catch(() => undefined);
        throw jobEnded(ref);
      }
      return { address: endpoint.address };
    });
  }

  /** Clients of trainer jobs' models, one service each (a service holds one training client). */
  const stepClients = new Map<
    string,
    Promise<{ service: ServiceClient; client: TrainingClient }>
  >();

  async function stepClient(spec: TrainerJobSpec, modelId: string | undefined) {
    const key = `${spec.jobId}|${modelId ?? ''}`;
    return cached(stepClients, key, async () => {
      const model = await resolveModel(spec.baseModel, deps.checkpointUrl);
      const service = ServiceClient.fromConfig(
        {
          baseModel: podBaseModel(spec.baseModel, model.dir).baseModel,
          loraRank: spec.loraRank,
          trainerJobId: spec.jobId,
          account: spec.account,
          checkpointUrl: deps.checkpointUrl,
        },
        { launcher: deps.launcher, onBackgroundError: logBackgroundError },
      );
      const client = await service.createTrainingClient(modelId ? { modelId } : {});
      return { service, client };
    });
  }

  async function executeTrainStep(
    spec: TrainerJobSpec,
    request: TrainStepRequest,
  ): Promise<TrainStepResult> {
    const { client } = await stepClient(spec, request.modelId);
    const out = await client.forwardBackward(
      request.datums,
      request.lossFn ?? 'cross_entropy',
      request.lossFnConfig ?? {},
    );
    const step = await client.optimStep(
      request.adamParams ?? {},
      request.gradAccumulationNormalization ?? 'none',
    );
    return {
      modelId: client.modelId,
      step: step.step,
      metrics: { ...out.metrics, ...step.metrics, grad_norm: step.gradNorm },
    };
  }

  async function superviseTrainer(spec: TrainerJobSpec): Promise<TrainerExit> {
    const ctx = Context.current();
    const jobId = spec.jobId;
    const start = new Date();
    const meter = async () => {
      const model = await resolveModel(spec.baseModel, deps.checkpointUrl);
      await recordTrainingUsage(
        deps.store,
        {
          id: `${spec.jobName}/${ctx.info.workflowExecution?.runId ?? start.toISOString()}/pod`,
          account: spec.account,
          source: spec.jobName,
          baseModel: spec.baseModel,
          modelDir: model.dir,
          start: new Date((await deps.launcher.get(jobId))?.createdAt ?? start),
          end: new Date(),
        },
        TRAINER_USAGE,
      );
    };
    for (;;) {
      const info = await deps.launcher.get(jobId);
      if (!info) return { kind: 'lost', reason: 'the trainer pod is unknown on its host' };
      if (info.state === 'stopped' || info.state === 'failed') {
        await meter();
        const stopped =
          info.state === 'stopped' && /inactivity|requested|SIGTERM/i.test(info.reason ?? '');
        return { kind: stopped ? 'stopped' : 'lost', reason: info.reason ?? info.state };
      }
      ctx.heartbeat();
      try {
        await ctx.sleep(1_000);
      } catch (error) {
        // Cancelled (the job was deleted): the pod goes with it.
        await deps.launcher.stop(jobId).catch(() => undefined);
        await meter().catch(() => undefined);
        throw error;
      }
    }
  }

  return { launchTrainerJob, executeTrainStep, superviseTrainer };
}

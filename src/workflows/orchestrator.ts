/**
 * The control plane's JobOrchestrator on Temporal: one workflow per job, its id the job's
 * resource name, so starting twice is a no-op and any process can find a job's workflow.
 */
import {
  type Client,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import { z } from 'zod';
import {
  type JobOrchestrator,
  type JobRef,
  OrchestrationError,
  type PromoteRequest,
} from '../orchestration/jobs.js';
import { adamWFields, optionalShape } from '../recipes/index.js';
import { promotionWorkflow, trainerJobWorkflow, trainingJobWorkflow } from './definitions/index.js';
import type { WorkflowSettings } from './definitions/proxies.js';
import { executeTrainStepUpdate } from './definitions/trainer-job.js';
import { innermostMessage } from './errors.js';
import type { TrainStepResult } from './types.js';
import { SHARED_TASK_QUEUE, workflowIdOf } from './types.js';

export { OrchestrationError };

const RESUME_CLOSE_WAIT_MS = 30_000;

const trainStepRequestSchema = z.strictObject({
  modelId: z.string().min(1).optional(),
  datums: z
    .array(
      z.strictObject({
        modelInput: z.array(z.number().int().nonnegative()).min(1),
        lossFnInputs: z.record(z.string(), z.array(z.number())),
      }),
    )
    .min(1, 'datums: give at least one datum'),
  lossFn: z.string().optional(),
  lossFnConfig: z.record(z.string(), z.number()).optional(),
  adamParams: z.strictObject(optionalShape(adamWFields)).optional(),
  gradAccumulationNormalization: z.enum(['num_loss_tokens', 'num_sequences', 'none']).optional(),
});

export class TemporalOrchestrator implements JobOrchestrator {
  constructor(
    private readonly client: Client,
    private readonly taskQueue = SHARED_TASK_QUEUE,
    private readonly settings: WorkflowSettings = {},
  ) {}

  async start(job: JobRef): Promise<void> {
    const workflow =
      job.collection === 'rlorTrainerJobs' ? trainerJobWorkflow : trainingJobWorkflow;
    try {
      await this.client.workflow.start(workflow, {
        taskQueue: this.taskQueue,
        workflowId: workflowIdOf(job),
        args: [job, this.settings],
      });
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    }
  }

  async cancel(job: JobRef): Promise<void> {
    try {
      await this.client.workflow.getHandle(workflowIdOf(job)).cancel();
    } catch (error) {
      if (error instanceof WorkflowNotFoundError)
        throw new OrchestrationError(
          'not_found',
          `job ${workflowIdOf(job)} has no running workflow`,
        );
      throw error;
    }
  }

  async isActive(job: JobRef): Promise<boolean> {
    try {
      const described = await this.client.workflow.getHandle(workflowIdOf(job)).describe();
      return described.status.name === 'RUNNING';
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return false;
      throw error;
    }
  }

  /**
   * A new run of the job's workflow; it continues from the job's last checkpoint. A run that
   * has just marked the job FAILED may still be closing (it records the state before it
   * ends): give it a moment before refusing.
   */
  async resume(job: JobRef): Promise<void> {
    const handle = this.client.workflow.getHandle(workflowIdOf(job));
    const running = async () =>
      (await handle.describe().catch(() => undefined))?.status.name === 'RUNNING';
    if (await running()) {
      await Promise.race([
        handle.result().catch(() => undefined),
        new Promise((r) => setTimeout(r, RESUME_CLOSE_WAIT_MS)),
      ]);
      if (await running())
        throw new OrchestrationError(
          'failed_precondition',
          `job ${workflowIdOf(job)} is still running`,
        );
    }
    await this.start(job);
  }

  /** `:executeTrainStep`: an update of the trainer job's workflow, run by the pod's host. */
  async executeTrainStep(job: JobRef, request: unknown): Promise<TrainStepResult> {
    const parsed = trainStepRequestSchema.parse(request);
    try {
      return await this.client.workflow
        .getHandle(workflowIdOf(job))
        .executeUpdate(executeTrainStepUpdate, { args: [parsed] });
    } catch (error) {
      if (error instanceof WorkflowUpdateFailedError)
        throw new OrchestrationError(
          'failed_precondition',
          `executeTrainStep: ${innermostMessage(error)}`,
        );
      if (error instanceof WorkflowNotFoundError)
        throw new OrchestrationError(
          'failed_precondition',
          `trainer job ${workflowIdOf(job)} is not running`,
        );
      throw error;
    }
  }

  async promote(request: PromoteRequest): Promise<unknown> {
    return this.client.workflow.execute(promotionWorkflow, {
      taskQueue: this.taskQueue,
      workflowId: `promote/${request.checkpoint}/${request.outputModelId}`,
      args: [
        {
          account: request.account,
          checkpoint: request.checkpoint,
          outputModelId: request.outputModelId,
          ...(request.baseModel ? { baseModel: request.baseModel } : {}),
        },
      ],
    });
  }
}

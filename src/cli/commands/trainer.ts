/**
 * `temper trainer create|get|delete|resume`: trainer jobs (rlorTrainerJobs) the user drives
 * through the Training API. Added beside `temper trainer serve` (the pod itself).
 */
import type { Command } from 'commander';
import { kindOf } from '../api/kinds.js';
import { customMethod, deleteResource, getResource, itemPath } from '../api/resources.js';
import { jobSchema } from '../api/schemas.js';
import { printResource } from '../output.js';
import { type ApiFlags, apiAction, defined, integer, number, withApiFlags } from './common.js';

const kind = kindOf('trainer');

interface CreateFlags extends ApiFlags {
  jobId?: string;
  baseModel?: string;
  trainingShapeRef?: string;
  loraRank?: number;
  maxContextLength?: number;
  learningRate?: number;
  displayName?: string;
  forwardOnly?: boolean;
  replicaCount?: number;
  inactivityTimeout?: string;
  disableInactivityCleanup?: boolean;
  baseDtype?: string;
  recompute?: boolean;
}

function addCreate(trainer: Command): void {
  withApiFlags(trainer.command('create'))
    .description('create a trainer job (a pod serving the Training API)')
    .option('--job-id <id>', 'id (default: random)')
    .option('--base-model <model>', 'model to train')
    .option('--training-shape-ref <shape>', 'training shape (names the base model too)')
    .option('--lora-rank <r>', 'LoRA rank (default 0 = full parameter)', integer)
    .option('--max-context-length <n>', 'context length', integer)
    .option('--learning-rate <lr>', 'learning rate (default 1e-5)', number)
    .option('--display-name <name>', 'display name')
    .option('--forward-only', 'a forward-only (reference) trainer')
    .option('--replica-count <n>', 'data-parallel replicas', integer)
    .option('--inactivity-timeout <duration>', 'stop after this long idle, e.g. 1800s (0 = 60 min)')
    .option('--disable-inactivity-cleanup', 'never stop for inactivity')
    // Checked by the control plane against the engine's schema (one definition, one message).
    .option(
      '--base-dtype <dtype>',
      'frozen base weights in float32 (default) or bfloat16 (half the memory; needs --lora-rank > 0)',
    )
    .option('--recompute', "recompute each layer's activations in backward (less memory)")
    .action(
      apiAction<CreateFlags>(async ({ api, output }, _args, f) => {
        const body = defined({
          baseModel: f.baseModel,
          trainingShapeRef: f.trainingShapeRef,
          loraRank: f.loraRank,
          maxContextLength: f.maxContextLength,
          learningRate: f.learningRate,
          displayName: f.displayName,
          forwardOnly: f.forwardOnly,
          replicaCount: f.replicaCount,
          inactivityTimeout: f.inactivityTimeout,
          disableInactivityCleanup: f.disableInactivityCleanup,
          baseDtype: f.baseDtype,
          recompute: f.recompute,
        });
        const job = await api.request('POST', api.collectionPath(kind.collection), jobSchema, {
          body,
          ...(f.jobId ? { query: { rlorTrainerJobId: f.jobId } } : {}),
        });
        printResource(job, output);
      }),
    );
}

/** `program`'s existing `trainer` command (from src/trainer/cli.ts), or a new one. */
function trainerCommand(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'trainer') ??
    program.command('trainer').description('trainer jobs')
  );
}

export function addTrainerVerbs(program: Command): void {
  const trainer = trainerCommand(program);
  addCreate(trainer);
  withApiFlags(trainer.command('get').argument('<id>', 'trainer job id or name'))
    .description('show a trainer job')
    .action(
      apiAction(async ({ api, output }, [id]) =>
        printResource(await getResource(api, kind, id!), output),
      ),
    );
  withApiFlags(trainer.command('delete').argument('<id>', 'trainer job id or name'))
    .description('delete a trainer job (a live one is stopped first; checkpoints stay)')
    .action(
      apiAction(async ({ api, output }, [id]) => {
        await deleteResource(api, kind, id!);
        printResource({ name: itemPath(api, kind, id!).slice(4), deleted: true }, output);
      }),
    );
  withApiFlags(trainer.command('resume').argument('<id>', 'trainer job id or name'))
    .description('resume a failed trainer job')
    .action(
      apiAction(async ({ api, output }, [id]) =>
        printResource(await customMethod(api, kind, id!, 'resume'), output),
      ),
    );
}

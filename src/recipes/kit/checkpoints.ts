/**
 * Save, resume and promote for recipes (the cookbook's TrainingCheckpoints): the checkpoint
 * catalog is the truth about what exists; `{log_path}/dataloader.json` only adds what the
 * catalog cannot know — which trainer job wrote a checkpoint, at which step, and how much data
 * had been consumed — for the 20 newest steps. Rerunning on the same log path resumes from the
 * newest checkpoint that is both recorded there and resumable in the catalog; an
 * `init_from_checkpoint` ("job:name") loads weights only and starts at step 0.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type {
  CheckpointRow,
  PromotedModel,
  ServiceClient,
  TrainingClient,
} from '../../sdk/index.js';
import { flattenParams } from '../../tracking/index.js';
import type { RecipeBaseConfig } from './base-config.js';
import type { RecipeClients } from './clients.js';
import { RecipeError } from './errors.js';

const KEEP = 20;

const entrySchema = z.object({
  job: z.string(),
  name: z.string(),
  step: z.number().int().nonnegative(),
  dataConsumed: z.number().int().nonnegative(),
});
const fileSchema = z.object({ checkpoints: z.array(entrySchema) });
export type CheckpointEntry = z.output<typeof entrySchema>;

export interface ResumeInfo {
  step: number;
  dataConsumed: number;
  /** Where the state came from: `job:name`. */
  from: string;
}

/** The checkpoints a log path's dataloader.json records, oldest first ([] when none). */
export async function recordedCheckpoints(logPath: string): Promise<CheckpointEntry[]> {
  const file = join(logPath, 'dataloader.json');
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return [];
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new RecipeError(`${file}: not JSON (${(error as Error).message})`);
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success)
    throw new RecipeError(`${file}: not a recipe dataloader file (${parsed.error.message})`);
  return parsed.data.checkpoints;
}

export class RecipeCheckpoints {
  private readonly file: string;

  constructor(
    private readonly policy: TrainingClient,
    private readonly service: ServiceClient,
    private readonly logPath: string,
  ) {
    this.file = join(logPath, 'dataloader.json');
  }

  private entries(): Promise<CheckpointEntry[]> {
    return recordedCheckpoints(this.logPath);
  }

  /** Newest recorded checkpoint that the catalog lists as resumable, or undefined. */
  async latestResumable(): Promise<CheckpointEntry | undefined> {
    const byJob = new Map<string, CheckpointRow[]>();
    const entries = (await this.entries()).sort((a, b) => b.step - a.step);
    for (const e of entries) {
      if (!byJob.has(e.job))
        byJob.set(e.job, await this.service.listCheckpoints(e.job).catch(() => []));
      const row = byJob.get(e.job)?.find((r) => r.name.endsWith(`/checkpoints/${e.name}`));
      if (row?.resumable) return e;
    }
    return undefined;
  }

  /** Restores the newest checkpoint of this log path, else `initFrom`'s weights, else nothing. */
  async resume(initFrom?: string): Promise<ResumeInfo | undefined> {
    const latest = await this.latestResumable();
    if (latest) {
      const path = await this.policy.resolveCheckpointPath(latest.name, latest.job);
      await this.policy.loadStateWithOptimizer(path);
      return {
        step: latest.step,
        dataConsumed: latest.dataConsumed,
        from: `${latest.job}:${latest.name}`,
      };
    }
    if (initFrom) {
      const cut = initFrom.indexOf(':');
      const job = initFrom.slice(0, cut);
      const name = initFrom.slice(cut + 1);
      const path = await this.policy.resolveCheckpointPath(name, job);
      await this.policy.loadState(path);
      return { step: 0, dataConsumed: 0, from: initFrom };
    }
    return undefined;
  }

  /**
   * Saves `step-{step}`: resumable = DCP train state, promotable = a full sampler export
   * (`base`, so it can be promoted). Recorded in dataloader.json once the save has succeeded.
   */
  async save(
    step: number,
    flags: { resumable: boolean; promotable: boolean },
    dataConsumed: number,
  ): Promise<void> {
    const name = `step-${String(step).padStart(6, '0')}`;
    if (flags.resumable) await this.policy.saveState(name);
    if (flags.promotable) await this.policy.saveWeightsForSampler(name, { checkpointType: 'base' });
    if (!flags.resumable) return;
    const job = this.service.trainerJobId;
    if (!job) throw new RecipeError('saving a checkpoint before the trainer exists');
    const kept = (await this.entries()).filter((e) => !(e.job === job && e.name === name));
    kept.push({ job, name, step, dataConsumed });
    kept.sort((a, b) => a.step - b.step);
    await mkdir(this.logPath, { recursive: true });
    const tmp = `${this.file}.tmp`;
    await writeFile(tmp, `${JSON.stringify({ checkpoints: kept.slice(-KEEP) }, null, 2)}\n`);
    await rename(tmp, this.file);
  }

  /**
   * After step `step` of `lastStep`: a resumable checkpoint every `interval` steps (0: never),
   * except on the last step, which `finish` saves.
   */
  async saveOnInterval(
    interval: number,
    step: number,
    lastStep: number,
    dataConsumed: number,
  ): Promise<void> {
    if (interval > 0 && step % interval === 0 && step < lastStep)
      await this.save(step, { resumable: true, promotable: false }, dataConsumed);
  }

  /**
   * The end of a run: the final checkpoint (resumable and promotable), promoted to
   * `output_model_id` when the config names one. Returns the run summary's `resumedFrom` and
   * `model` fields.
   */
  async finish(
    step: number,
    dataConsumed: number,
    config: { output_model_id?: string | undefined; base_model: string },
    resumed: ResumeInfo | undefined,
  ): Promise<{ resumedFrom?: string; model?: PromotedModel }> {
    await this.save(step, { resumable: true, promotable: true }, dataConsumed);
    const model = config.output_model_id
      ? await this.promoteLatest(config.output_model_id, config.base_model)
      : undefined;
    return { ...(resumed ? { resumedFrom: resumed.from } : {}), ...(model ? { model } : {}) };
  }

  /** Promotes this trainer's newest promotable checkpoint to `outputModelId`. */
  async promoteLatest(outputModelId: string, baseModel: string): Promise<PromotedModel> {
    const job = this.service.trainerJobId;
    if (!job) throw new RecipeError('promoting before the trainer exists');
    const rows = await this.service.listCheckpoints(job);
    const row = rows.filter((r) => r.promotable).at(-1);
    if (!row) throw new RecipeError(`trainer job ${job} has no promotable checkpoint to promote`);
    return this.service.promoteCheckpoint({ name: row.name, outputModelId, baseModel });
  }
}

/**
 * A run's policy on a new trainer, restored from the newest checkpoint of its log path (or
 * `init_from_checkpoint`'s weights). A run that starts afresh logs its config as the tracked
 * params; a resumed one keeps those it logged the first time.
 */
export async function startPolicy(
  recipe: string,
  config: RecipeBaseConfig,
  { service, tracker, log }: RecipeClients,
): Promise<{ policy: TrainingClient; ckpt: RecipeCheckpoints; resumed: ResumeInfo | undefined }> {
  const policy = await service.createTrainingClient();
  const ckpt = new RecipeCheckpoints(policy, service, config.log_path);
  const resumed = await ckpt.resume(config.init_from_checkpoint);
  if (resumed) log.info({ from: resumed.from, step: resumed.step }, 'resumed');
  else await tracker.logParams(flattenParams({ recipe, ...config }));
  return { policy, ckpt, resumed };
}

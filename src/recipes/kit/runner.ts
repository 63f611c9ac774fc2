/**
 * Running a recipe by name (what `temper recipe <name> --config <file>` and library callers
 * do): validate the config once with the recipe's schema (errors name the field), open the
 * clients (tracking is checked before any trainer starts), run the loop, close the tracked run
 * as FINISHED or FAILED, and release trainers and deployments.
 */

import type { Logger } from 'pino';
import type { z } from 'zod';
import type { PromotedModel, ServiceConfig } from '../../sdk/index.js';
import { RUN_ARTIFACTS } from '../../tracking/index.js';
import type { RecipeBaseConfig } from './base-config.js';
import { recordedCheckpoints } from './checkpoints.js';
import { openRecipeClients, type RecipeClients } from './clients.js';
import { RecipeError } from './errors.js';

export interface RecipeDefinition<S extends z.ZodType, R> {
  name: string;
  schema: S;
  run(config: z.output<S>, clients: RecipeClients): Promise<R>;
  /** Service settings the recipe needs beyond the base config's (a sampling deployment). */
  service?(config: z.output<S>): Partial<ServiceConfig>;
}

/** Parses a recipe config; the error lists each bad field by its path. */
export function parseRecipeConfig<S extends z.ZodType>(
  name: string,
  schema: S,
  input: unknown,
  source = 'config',
): z.output<S> {
  const parsed = schema.safeParse(input);
  if (!parsed.success)
    throw new RecipeError(
      `invalid ${name} recipe ${source}: ${parsed.error.issues
        .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
        .join('; ')}`,
    );
  return parsed.data;
}

/**
 * The run's outputs as tracked artifacts, at the paths a managed job's run has them
 * (RUN_ARTIFACTS): the checkpoints this log path recorded (the last is the final one) and,
 * when the run promoted its output, the model's record.
 */
async function logRunOutputs(clients: RecipeClients, logPath: string, result: unknown) {
  const model = (result as { model?: PromotedModel } | null)?.model;
  const checkpoints = await recordedCheckpoints(logPath);
  const last = checkpoints.at(-1);
  await clients.tracker.logArtifact(
    RUN_ARTIFACTS.checkpoints,
    `${JSON.stringify(
      {
        outputModel: model?.name ?? null,
        lastCheckpoint: last ? { checkpoint: `${last.job}:${last.name}`, step: last.step } : null,
        checkpoints,
      },
      null,
      2,
    )}\n`,
  );
  if (model) await clients.tracker.logArtifact(RUN_ARTIFACTS.model, `${JSON.stringify(model)}\n`);
}

export async function runRecipeDefinition<S extends z.ZodType, R>(
  def: RecipeDefinition<S, R>,
  input: unknown,
  o: { log?: Logger; source?: string; validated?: boolean } = {},
): Promise<R> {
  // a config read from a file was validated there (with line numbers): not twice
  const config = o.validated
    ? (input as z.output<S>)
    : parseRecipeConfig(def.name, def.schema, input, o.source);
  const base = config as unknown as RecipeBaseConfig;
  const clients = await openRecipeClients(base, {
    recipe: def.name,
    ...(def.service ? { service: def.service(config) } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
  let status: 'FINISHED' | 'FAILED' = 'FAILED';
  try {
    const result = await def.run(config, clients);
    await clients.tracker.logArtifact('config.json', `${JSON.stringify(config, null, 2)}\n`);
    await clients.tracker.logArtifact('result.json', `${JSON.stringify(result, null, 2)}\n`);
    await logRunOutputs(clients, base.log_path, result);
    status = 'FINISHED';
    return result;
  } finally {
    try {
      await clients.tracker.finish(status);
    } finally {
      await clients.close();
    }
  }
}

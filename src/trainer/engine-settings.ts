/**
 * The engine settings a trainer pod runs all its models with (`baseDtype`, `recompute`): the
 * engine's own schema (src/engine engineOptionsSchema, defaults and messages there), checked
 * once where a pod is asked for (the launcher, the pod's command line) with an error that
 * names the field.
 */
import type { z } from 'zod';
import { engineOptionsSchema } from '../engine/model.js';
import { TrainerError } from './errors.js';

export type EngineSettings = z.output<typeof engineOptionsSchema>;
export type EngineSettingsInput = z.input<typeof engineOptionsSchema>;

const strictSchema = engineOptionsSchema.strict();

export function parseEngineSettings(input: unknown): EngineSettings {
  const parsed = strictSchema.safeParse(input ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = ['engine', ...issue.path.map(String)].join('.');
  const message =
    issue.code === 'unrecognized_keys'
      ? `unknown engine setting(s) ${issue.keys.map((k) => `'${k}'`).join(', ')}; the settings are baseDtype and recompute`
      : issue.message;
  throw new TrainerError('invalid_argument', `${field}: ${message}`, { field });
}

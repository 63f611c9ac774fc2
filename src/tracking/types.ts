/**
 * The one face every experiment tracker has. A recipe (or a managed job, through
 * `trackJob`) logs its parameters once, one metrics record per step, and artifacts (small
 * files: its config, its final metrics); `finish` closes the run with how it ended.
 */
export type RunStatus = 'FINISHED' | 'FAILED' | 'KILLED';

/**
 * What a finished training run (a managed job or a recipe) attaches to its tracked run, at the
 * same paths for both: its output model's record (the promoted model's temper_model.json:
 * source checkpoint, every file with size and sha256) and its checkpoints (the final one's
 * reference among them).
 */
export const RUN_ARTIFACTS = {
  model: 'model/temper_model.json',
  checkpoints: 'checkpoints.json',
} as const;

export type ParamValue = string | number | boolean | null | undefined;

export interface Tracker {
  /** Where the run lives, for logs and reports (e.g. `mlflow:<run id>`); one per backend. */
  readonly runRefs: readonly string[];
  /** Flat parameters (nested objects are flattened with dots by the caller or flattenParams). */
  logParams(params: Readonly<Record<string, ParamValue>>): Promise<void>;
  /** One step's metrics; non-finite values are skipped (trackers cannot store them). */
  logMetrics(step: number, metrics: Readonly<Record<string, number>>): Promise<void>;
  /** A small file attached to the run under `path` (relative, `/`-separated). */
  logArtifact(path: string, content: string | Uint8Array): Promise<void>;
  finish(status: RunStatus): Promise<void>;
}

/** `{a: {b: 1}, c: [1, 2]}` → `{'a.b': 1, c: '[1,2]'}`: the shape trackers store parameters in. */
export function flattenParams(value: unknown, prefix = ''): Record<string, ParamValue> {
  const isRecord = value !== null && typeof value === 'object' && !Array.isArray(value);
  if (!isRecord) {
    if (prefix === '') return {};
    return { [prefix]: Array.isArray(value) ? JSON.stringify(value) : (value as ParamValue) };
  }
  const out: Record<string, ParamValue> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>))
    Object.assign(out, flattenParams(v, prefix === '' ? k : `${prefix}.${k}`));
  return out;
}

export class TrackingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrackingError';
  }
}

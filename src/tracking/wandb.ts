/**
 * Weights & Biases: the seed's `--wandb-*` settings are accepted, and checked when a run is
 * submitted. temper has no W&B wire client, and this deployment cannot reach W&B's service,
 * so a run that asks for W&B fails at submission — before any trainer starts — with an error
 * saying W&B is unreachable and what to use instead, rather than training without the
 * tracking the user asked for.
 */
import type { TrackingSettings } from './config.js';
import { TrackingError } from './types.js';

export const WANDB_DEFAULT_BASE_URL = 'https://api.wandb.ai';

export function wandbRequested(s: TrackingSettings): boolean {
  return (
    s.wandbProject !== undefined ||
    s.wandbEntity !== undefined ||
    s.wandbApiKey !== undefined ||
    s.wandbRunName !== undefined
  );
}

/** Probes W&B's API host (3 s); the error names the host and the reason. */
export async function checkWandb(
  s: TrackingSettings,
  fetchFn: typeof fetch = fetch,
): Promise<void> {
  const base = s.wandbBaseUrl ?? WANDB_DEFAULT_BASE_URL;
  let reason: string;
  try {
    const res = await fetchFn(base, { method: 'HEAD', signal: AbortSignal.timeout(3_000) });
    reason = `it answered HTTP ${res.status}, but temper has no W&B client to stream runs to it`;
  } catch (error) {
    const e = error as Error & { cause?: { code?: string; message?: string } };
    reason = e.cause?.code ?? e.cause?.message ?? e.message;
  }
  throw new TrackingError(
    `W&B is unreachable from temper at ${base} (${reason}); experiment tracking to W&B (--wandb-project/--wandb-entity) cannot be used here — use --mlflow-tracking-uri with an MLflow tracking server instead`,
  );
}

/**
 * Usage events as the platform records them (the billing export's rows): their types and how
 * one is built with a content id. Kept beside the store, which persists them, so the worker
 * that meters jobs and the control plane that exports them share it without importing each
 * other (src/control-plane/usage.ts re-exports it with the export ranges).
 */
import { createHash } from 'node:crypto';
import type { UsageEvent } from './types.js';

/** Trainer time of a managed SFT, DPO or RFT job (accelerator seconds). */
export const FINE_TUNING_USAGE = 'FINE_TUNING_USAGE';
/** Trainer time of a user-driven rlorTrainerJob pod (Training API; accelerator seconds). */
export const TRAINER_USAGE = 'TRAINER_USAGE';
/** Tokens through a deployment: RFT rollouts, completions (prompt and completion tokens). */
export const TEXT_COMPLETION_INFERENCE_USAGE = 'TEXT_COMPLETION_INFERENCE_USAGE';

export const USAGE_TYPES = [
  FINE_TUNING_USAGE,
  TRAINER_USAGE,
  TEXT_COMPLETION_INFERENCE_USAGE,
] as const;
export type UsageType = (typeof USAGE_TYPES)[number];

/** What a caller gives to build a UsageEvent: its optional fields as they are, plus these. */
export interface UsageEventFields
  extends Omit<UsageEvent, 'id' | 'usageType' | 'startTime' | 'endTime'> {
  usageType: UsageType;
  /** A Date or an RFC 3339 string. */
  startTime: Date | string;
  /** Default: startTime (an instantaneous event such as one request). */
  endTime?: Date | string;
  /**
   * Default: a hash of every other field, so an activity retried with the same inputs
   * rebuilds the same id and is metered once. Give an id when two distinct events could
   * agree in every field (two identical requests in one millisecond), e.g. a request id or
   * `${job}/segment-${n}`.
   */
  id?: string;
}

/** One text form per instant, so equal times give equal content ids. */
function toIso(time: Date | string): string {
  const ms = typeof time === 'string' ? Date.parse(time) : time.getTime();
  // An unparsable time is passed on as given: the store names it in its error.
  return Number.isNaN(ms) ? String(time) : new Date(ms).toISOString();
}

/**
 * A UsageEvent from the fields that apply; undefined fields are left out. Validation is the
 * store's (recordUsage refuses malformed events with `invalid_argument`).
 */
export function usageEvent(fields: UsageEventFields): UsageEvent {
  const { id, endTime, startTime, ...rest } = fields;
  const event: Omit<UsageEvent, 'id'> = {
    ...rest,
    startTime: toIso(startTime),
    endTime: toIso(endTime ?? startTime),
  };
  for (const [key, value] of Object.entries(event))
    if (value === undefined) delete (event as Record<string, unknown>)[key];
  return { id: id ?? contentId(event), ...event };
}

/** `use-` + 32 hex digits of SHA-256 over the fields in a fixed (sorted) key order. */
function contentId(event: Omit<UsageEvent, 'id'>): string {
  const canonical = JSON.stringify(Object.entries(event).sort(([a], [b]) => (a < b ? -1 : 1)));
  return `use-${createHash('sha256').update(canonical).digest('hex').slice(0, 32)}`;
}

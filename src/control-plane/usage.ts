/**
 * Usage metering: the usage types temper records and a builder for the events the workflows'
 * activities hand to `store.recordUsage([...])`. The billing export
 * (`GET /v1/accounts/{a}/billing:exportMetrics`, `temper billing export-metrics`) prints
 * them one CSV row each.
 *
 *   await store.recordUsage([
 *     usageEvent({
 *       account, usageType: FINE_TUNING_USAGE, source: job.name,
 *       startTime: segmentStart, endTime: new Date(),
 *       acceleratorType: 'CPU', acceleratorSeconds: 42.5,
 *       baseModelName: 'accounts/temper/models/byte-lm-3m', parameterCount: 3_000_000,
 *     }),
 *   ]);
 *
 * Names follow the product's usage_type column (TEXT_COMPLETION_INFERENCE_USAGE).
 */
export {
  FINE_TUNING_USAGE,
  TEXT_COMPLETION_INFERENCE_USAGE,
  TRAINER_USAGE,
  USAGE_TYPES,
  type UsageEventFields,
  type UsageType,
  usageEvent,
} from '../store/usage-events.js';

// ---- export ranges (shared by the REST route and the CLI) ----

/** The longest range one billing export covers, as the product's export-metrics. */
export const MAX_EXPORT_DAYS = 31;

const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * A date (`2025-01-01`, midnight UTC) or an RFC 3339 time with its offset
 * (`2025-01-01T08:00:00Z`, `2025-01-01T09:00:00.5+01:00`); undefined for anything else,
 * impossible dates (`2025-02-30`) included.
 */
export function parseUsageTime(text: string): Date | undefined {
  const date = DATE_ONLY.exec(text);
  if (date) return utc(date.slice(1, 4).map(Number), [0, 0, 0], 0, 0);
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  const fraction = Math.floor(Number(`0${m[7] ?? ''}`) * 1000);
  const sign = m[9] === '-' ? -1 : 1;
  const offsetMinutes = m[8] ? 0 : sign * (Number(m[10]) * 60 + Number(m[11]));
  if (Math.abs(offsetMinutes) >= 24 * 60 || Number(m[11]) > 59) return undefined;
  return utc([y, mo, d], [h, mi, s], fraction, offsetMinutes);
}

/** The instant, or undefined when a field is out of range (Date.UTC would roll it over). */
function utc(
  [y = 0, mo = 0, d = 0]: (number | undefined)[],
  [h = 0, mi = 0, s = 0]: (number | undefined)[],
  ms: number,
  offsetMinutes: number,
): Date | undefined {
  const local = new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
  local.setUTCFullYear(y); // Date.UTC maps years 0-99 to 1900-1999
  const same =
    local.getUTCFullYear() === y &&
    local.getUTCMonth() === mo - 1 &&
    local.getUTCDate() === d &&
    local.getUTCHours() === h &&
    local.getUTCMinutes() === mi &&
    local.getUTCSeconds() === s;
  return same ? new Date(local.getTime() - offsetMinutes * 60_000) : undefined;
}

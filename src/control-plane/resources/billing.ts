/**
 * The billing export: `GET /v1/accounts/{account}/billing:exportMetrics?startTime=&endTime=`
 * answers `text/csv` with the product's columns, one row per usage event whose start time
 * is in [startTime, endTime), oldest first.
 *
 * - Times: a date (`2025-01-01`, midnight UTC) or RFC 3339 with an offset; both required,
 *   endTime after startTime, at most 31 days apart (the product's limit; longer histories
 *   are exported in chunks, which [start, end) lets line up without overlap).
 * - `email`: the store keeps no email per account, so the account's display name is used
 *   when it is an email address, and the cell is empty otherwise.
 * - Billing is private to the key's account, the public catalog account included: any other
 *   account answers NOT_FOUND, like every other route's cross-account access.
 *
 * The route is a custom method on the account (`billing:exportMetrics`) rather than a
 * collection, so it is registered on its own and not through registerCollection.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { TimeRange, UsageEvent } from '../../store/index.js';
import type { Deps } from '../context.js';
import { principalOf } from '../http/auth.js';
import { invalid, notFound, zodMessage } from '../http/errors.js';
import { MAX_EXPORT_DAYS, parseUsageTime } from '../usage.js';

/** The header line, exactly as the product writes it. */
export const BILLING_CSV_COLUMNS = [
  'email',
  'start_time',
  'end_time',
  'usage_type',
  'accelerator_type',
  'accelerator_seconds',
  'base_model_name',
  'model_bucket',
  'parameter_count',
  'prompt_tokens',
  'completion_tokens',
] as const;

const DAY_MS = 86_400_000;
const TIME_FORMS = 'a date (2025-01-01) or an RFC 3339 time (2025-01-01T00:00:00Z)';

const exportQuery = z.looseObject({
  startTime: z.string().optional(),
  endTime: z.string().optional(),
});

function exportTime(value: string | undefined, field: 'startTime' | 'endTime'): Date {
  if (value === undefined || value.trim() === '')
    throw invalid(`${field} is required: ${TIME_FORMS}`);
  const time = parseUsageTime(value.trim());
  if (!time) throw invalid(`${field} "${value}" is not ${TIME_FORMS}`);
  return time;
}

/** The checked range of an export request (messages name the parameter at fault). */
export function exportRange(query: unknown): TimeRange {
  const q = exportQuery.safeParse(query ?? {});
  if (!q.success) throw invalid(zodMessage(q.error, 'query'));
  const start = exportTime(q.data.startTime, 'startTime');
  const end = exportTime(q.data.endTime, 'endTime');
  const [startTime, endTime] = [start.toISOString(), end.toISOString()];
  if (end <= start) throw invalid(`endTime (${endTime}) must be after startTime (${startTime})`);
  if (end.getTime() - start.getTime() > MAX_EXPORT_DAYS * DAY_MS)
    throw invalid(
      `the range from ${startTime} to ${endTime} is longer than ${MAX_EXPORT_DAYS} days: ` +
        `export at most ${MAX_EXPORT_DAYS} days at once, in ${MAX_EXPORT_DAYS}-day chunks`,
    );
  return { startTime, endTime };
}

/** `2025-10-20 17:16:48 UTC`, the product's cell form (whole seconds). */
export function csvTime(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

/** RFC 4180: quoted only when it holds a comma, quote or line break; quotes doubled. */
function csvCell(value: string | number | undefined): string {
  if (value === undefined) return '';
  const text = typeof value === 'number' ? String(value) : value;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Seconds to the millisecond, as times are kept: no binary-fraction noise in the file. */
const seconds = (value: number | undefined) =>
  value === undefined ? undefined : Math.round(value * 1000) / 1000;

function csvRow(email: string, e: UsageEvent): string {
  return [
    email,
    csvTime(e.startTime),
    csvTime(e.endTime),
    e.usageType,
    e.acceleratorType,
    seconds(e.acceleratorSeconds),
    e.baseModelName,
    e.modelBucket,
    e.parameterCount,
    e.promptTokens,
    e.completionTokens,
  ]
    .map(csvCell)
    .join(',');
}

export function billingCsv(email: string, events: UsageEvent[]): string {
  const lines = [BILLING_CSV_COLUMNS.join(','), ...events.map((e) => csvRow(email, e))];
  return lines.map((line) => `${line}\n`).join('');
}

const EMAIL = /^[^\s@,"]+@[^\s@,"]+\.[^\s@,"]+$/;

/** The display name when it is an email address, else '' (the store has no email field). */
export function accountEmail(displayName: string | undefined): string {
  const name = displayName?.trim() ?? '';
  return EMAIL.test(name) ? name : '';
}

async function exportMetrics(deps: Deps, req: FastifyRequest, reply: FastifyReply) {
  const { account } = req.params as { account: string };
  // Not authorize(): that lets every key read the catalog account, and billing is private.
  if (principalOf(req).account !== account) throw notFound(`accounts/${account}/billing not found`);
  const range = exportRange(req.query);
  const [record, events] = await Promise.all([
    deps.store.getAccount(account),
    deps.store.listUsage(account, range),
  ]);
  return reply
    .type('text/csv; charset=utf-8')
    .send(billingCsv(accountEmail(record?.displayName), events));
}

/** Registers the billing routes on the app (after buildServer, under its auth hook). */
export function billingRoutes(app: FastifyInstance, deps: Deps): void {
  // `::` is a literal ':' in a Fastify path.
  app.get('/v1/accounts/:account/billing::exportMetrics', (req, reply) =>
    exportMetrics(deps, req, reply),
  );
}

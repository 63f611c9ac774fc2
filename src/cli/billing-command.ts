/**
 * `temper billing export-metrics [--start-time T] [--end-time T] [--filename F]`: the
 * account's usage as the product's billing CSV, from
 * `GET /v1/accounts/{a}/billing:exportMetrics`.
 *
 * Times are dates (`2025-01-01`, midnight UTC) or RFC 3339 times; the range is
 * [start, end) and at most 31 days (the server checks and says so). Without --end-time the
 * export ends now; without --start-time it starts 31 days before its end, so the bare
 * command exports the last 31 days. The file is `billing_metrics.csv` unless --filename
 * says otherwise (`-` writes the CSV to stdout); it is only written once the server has
 * answered, so a refused export leaves no file behind.
 */
import { rename, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { z } from 'zod';
import { MAX_EXPORT_DAYS, parseUsageTime } from '../control-plane/usage.js';
import type { TemperApi } from './api/client.js';
import { type ApiFlags, apiAction, withApiFlags } from './commands/common.js';
import { formatJson, formatKeyValue } from './output.js';

export const DEFAULT_BILLING_FILENAME = 'billing_metrics.csv';

const DAY_MS = 86_400_000;

export interface BillingCommandOptions {
  /** Where the summary (or the CSV, with `--filename -`) is written; default stdout. */
  out?: NodeJS.WritableStream;
  /** The clock for the default range (tests pin it). */
  now?: () => Date;
}

interface ExportFlags extends ApiFlags {
  startTime?: string;
  endTime?: string;
  filename: string;
}

/** The range to ask for: the flags as given, the missing ends filled in (see above). */
export function exportRange(
  flags: { startTime?: string; endTime?: string },
  now: Date,
): { startTime: string; endTime: string } {
  const endTime = flags.endTime ?? now.toISOString();
  if (flags.startTime !== undefined) return { startTime: flags.startTime, endTime };
  const end = parseUsageTime(endTime);
  if (!end)
    throw new Error(
      `--end-time "${endTime}" is not a date (2025-01-01) or an RFC 3339 time (2025-01-01T00:00:00Z)`,
    );
  return {
    startTime: new Date(end.getTime() - MAX_EXPORT_DAYS * DAY_MS).toISOString(),
    endTime,
  };
}

// The client parses JSON and hands any other body back as {raw: text}; a CSV always has its
// header line, so a success is never empty or JSON.
const csvResponse = z.object({ raw: z.string() });

/** The CSV text of the account's usage in [startTime, endTime). */
export async function fetchBillingCsv(
  api: TemperApi,
  range: { startTime: string; endTime: string },
): Promise<string> {
  const path = `${api.collectionPath('billing')}:exportMetrics`;
  return (await api.request('GET', path, csvResponse, { query: range })).raw;
}

/** Records after the header: line ends outside quotes (a quoted cell may hold a newline). */
export function dataRows(csv: string): number {
  let quoted = false;
  let records = 0;
  for (const ch of csv) {
    if (ch === '"') quoted = !quoted;
    else if (ch === '\n' && !quoted) records++;
  }
  return Math.max(0, records - 1);
}

/** Writes through a temporary file, so a reader never sees half a CSV. */
async function writeAtomically(filename: string, text: string): Promise<void> {
  const tmp = `${filename}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, filename);
}

async function exportMetrics(
  api: TemperApi,
  flags: ExportFlags,
  opts: Required<BillingCommandOptions>,
): Promise<void> {
  const range = exportRange(flags, opts.now());
  const csv = await fetchBillingCsv(api, range);
  if (flags.filename === '-') {
    opts.out.write(csv);
    return;
  }
  await writeAtomically(flags.filename, csv);
  const summary = { filename: flags.filename, rows: dataRows(csv), ...range };
  opts.out.write(flags.output === 'json' ? formatJson(summary) : formatKeyValue(summary));
}

/** Adds `temper billing export-metrics` to the program. */
export function addBillingCommand(program: Command, options: BillingCommandOptions = {}): void {
  const opts = { out: options.out ?? process.stdout, now: options.now ?? (() => new Date()) };
  const billing = program.command('billing').description('billing and usage');
  withApiFlags(billing.command('export-metrics'))
    .description(
      `export the account's usage as a billing CSV (at most ${MAX_EXPORT_DAYS} days per export)`,
    )
    .option(
      '--start-time <time>',
      `date or RFC 3339 time (default: ${MAX_EXPORT_DAYS} days before the end)`,
    )
    .option('--end-time <time>', 'date or RFC 3339 time, exclusive (default: now)')
    .option('--filename <file>', 'CSV file to write, - for stdout', DEFAULT_BILLING_FILENAME)
    .action(
      apiAction<ExportFlags>(async ({ api }, _args, flags) => {
        await exportMetrics(api, flags, opts);
      }),
    );
}

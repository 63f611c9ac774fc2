// `temper billing export-metrics` against a real control plane: in-process, on SQLite,
// listening on a loopback port, with the command run through commander as main.ts would.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addBillingCommand,
  DEFAULT_BILLING_FILENAME,
  dataRows,
  exportRange,
} from '../../src/cli/billing-command.js';
import {
  FINE_TUNING_USAGE,
  TEXT_COMPLETION_INFERENCE_USAGE,
  usageEvent,
} from '../../src/control-plane/usage.js';
import { type Harness, startHarness } from '../control-plane/harness.js';

const HEADER =
  'email,start_time,end_time,usage_type,accelerator_type,accelerator_seconds,base_model_name,model_bucket,parameter_count,prompt_tokens,completion_tokens';
const NOW = new Date('2025-11-15T12:00:00Z');
const daysBefore = (days: number) => new Date(NOW.getTime() - days * 86_400_000);

let h: Harness;
let apiUrl = '';
let dir = '';

beforeAll(async () => {
  h = await startHarness();
  apiUrl = await h.cp.listen(0, '127.0.0.1');
  dir = mkdtempSync(join(tmpdir(), 'temper-billing-cli-'));
  await h.store.recordUsage([
    usageEvent({
      account: 'alice',
      usageType: FINE_TUNING_USAGE,
      startTime: daysBefore(10),
      endTime: daysBefore(9.5),
      acceleratorType: 'CPU',
      acceleratorSeconds: 43_200,
      baseModelName: 'accounts/temper/models/byte-lm-3m',
    }),
    usageEvent({
      account: 'alice',
      usageType: TEXT_COMPLETION_INFERENCE_USAGE,
      startTime: daysBefore(40),
      modelBucket: 'multi\nline',
      promptTokens: 5,
      completionTokens: 7,
    }),
  ]);
});

afterAll(async () => {
  await h?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs `temper billing export-metrics ...` as alice; resolves with what it printed. */
async function run(args: string[]): Promise<string> {
  let printed = '';
  const out = new Writable({
    write(chunk, _encoding, done) {
      printed += String(chunk);
      done();
    },
  });
  const program = new Command('temper').exitOverride();
  addBillingCommand(program, { out, now: () => NOW });
  const connection = ['--api-url', apiUrl, '--api-key', h.alice, '--account', 'alice'];
  await program.parseAsync(['billing', 'export-metrics', ...connection, ...args], {
    from: 'user',
  });
  return printed;
}

describe('temper billing export-metrics', () => {
  it('writes the CSV of a date range to --filename and says how many rows', async () => {
    const file = join(dir, 'january_metrics.csv');
    const printed = await run([
      '--start-time',
      '2025-10-01',
      '--end-time',
      '2025-11-01',
      '--filename',
      file,
    ]);
    const csv = readFileSync(file, 'utf8');
    expect(csv).toBe(
      `${HEADER}\n,2025-10-06 12:00:00 UTC,2025-10-06 12:00:00 UTC,TEXT_COMPLETION_INFERENCE_USAGE,,,,"multi\nline",,5,7\n`,
    );
    expect(printed).toContain(`filename   ${file}\n`);
    expect(printed).toMatch(/rows\s+1\n/);
    expect(readdirSync(dir)).toEqual(['january_metrics.csv']);
  });

  it('exports the last 31 days to billing_metrics.csv by default, JSON summary with -o json', async () => {
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const printed = await run(['-o', 'json']);
      expect(JSON.parse(printed)).toEqual({
        filename: DEFAULT_BILLING_FILENAME,
        rows: 1,
        startTime: daysBefore(31).toISOString(),
        endTime: NOW.toISOString(),
      });
      const csv = readFileSync(join(dir, DEFAULT_BILLING_FILENAME), 'utf8');
      expect(csv.split('\n')[1]).toBe(
        ',2025-11-05 12:00:00 UTC,2025-11-06 00:00:00 UTC,FINE_TUNING_USAGE,CPU,43200,accounts/temper/models/byte-lm-3m,,,,',
      );
    } finally {
      process.chdir(cwd);
    }
  });

  it('writes the CSV to stdout with --filename -', async () => {
    const printed = await run([
      '--start-time',
      '2025-11-01T00:00:00Z',
      '--end-time',
      '2025-11-15',
      '--filename',
      '-',
    ]);
    expect(printed.startsWith(`${HEADER}\n,2025-11-05 12:00:00 UTC`)).toBe(true);
    expect(dataRows(printed)).toBe(1);
  });

  it("fails with the server's message and writes no file when the range is refused", async () => {
    const file = join(dir, 'too-long.csv');
    const args = ['--start-time', '2025-01-01', '--end-time', '2025-07-01', '--filename', file];
    await expect(run(args)).rejects.toThrow(/is longer than 31 days: export at most 31 days/);
    await expect(run(['--start-time', 'soon', '--filename', file])).rejects.toThrow(
      /^startTime "soon" is not a date/,
    );
    expect(existsSync(file)).toBe(false);
  });
});

describe('exportRange', () => {
  it('fills in the missing ends: now, and 31 days before the end', () => {
    expect(exportRange({}, NOW)).toEqual({
      startTime: '2025-10-15T12:00:00.000Z',
      endTime: '2025-11-15T12:00:00.000Z',
    });
    expect(exportRange({ endTime: '2025-02-01' }, NOW)).toEqual({
      startTime: '2025-01-01T00:00:00.000Z',
      endTime: '2025-02-01',
    });
    expect(exportRange({ startTime: '2025-11-01' }, NOW)).toEqual({
      startTime: '2025-11-01',
      endTime: NOW.toISOString(),
    });
    expect(() => exportRange({ endTime: 'tomorrow' }, NOW)).toThrow(/--end-time "tomorrow"/);
  });
});

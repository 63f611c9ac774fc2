/**
 * What every API verb shares: the connection flags (--api-url, --api-key, --account), `-o`,
 * and number parsers. Ranges are left to the server so its messages (the spec's) are the
 * ones the user sees.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { TemperApi } from '../api/client.js';
import { resolveConnection } from '../api/connection.js';
import { type OutputFormat, parseOutputFormat } from '../output.js';

export interface ApiFlags {
  apiUrl?: string;
  apiKey?: string;
  account?: string;
  output: OutputFormat;
}

export interface ApiContext {
  api: TemperApi;
  output: OutputFormat;
}

/** Adds the connection and output flags to a verb. */
export function withApiFlags(cmd: Command): Command {
  return cmd
    .option('--api-url <url>', 'control plane URL (default $TEMPER_API_URL, then `temper up`)')
    .option('--api-key <key>', 'API key (default $TEMPER_API_KEY, then `temper up`)')
    .option('--account <id>', "account (default $TEMPER_ACCOUNT, then the key's account)")
    .option('-o, --output <format>', 'json or text', parseOutputFormat, 'text' as OutputFormat);
}

export async function apiContext(flags: ApiFlags): Promise<ApiContext> {
  const connection = await resolveConnection(flags);
  return { api: new TemperApi(connection), output: flags.output };
}

/**
 * Wraps a verb's action: resolves the connection from the verb's flags, then runs `fn`
 * with the positional arguments and the flags.
 */
export function apiAction<F extends ApiFlags>(
  fn: (ctx: ApiContext, args: string[], flags: F) => Promise<void>,
): (...all: unknown[]) => Promise<void> {
  return async (...all: unknown[]) => {
    const cmd = all.at(-1) as Command;
    const flags = cmd.opts() as F;
    const args = all.slice(0, -2).flatMap((a) => (a === undefined ? [] : [a as string]));
    await fn(await apiContext(flags), args, flags);
  };
}

export function number(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n))
    throw new InvalidArgumentError('expected a number');
  return n;
}

export function integer(value: string): number {
  const n = number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('expected a whole number');
  return n;
}

/** Drops undefined values, so only the flags given are sent. */
export function defined(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

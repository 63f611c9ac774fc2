/**
 * How a failed command reads on the terminal: `temper: <message>` with the server's own words,
 * then one indented line per detail the server gave (every dataset problem with its line).
 */
import { ApiRequestError } from './api/client.js';
import { datasetValidationDetailSchema } from './api/schemas.js';

function detailLine(detail: unknown): string | undefined {
  const d = datasetValidationDetailSchema.safeParse(detail);
  if (!d.success) return undefined;
  const text = d.data.detail ?? d.data.message;
  if (!text) return undefined;
  return typeof d.data.line === 'number' ? `line ${d.data.line}: ${text}` : text;
}

export function errorLines(err: unknown): string[] {
  const message = err instanceof Error ? err.message : String(err);
  if (!(err instanceof ApiRequestError)) return [message];
  const details = err.details.map(detailLine).filter((l): l is string => l !== undefined);
  // A single detail without a line number is the message itself said again.
  const useful = details.length > 1 || details.some((l) => l.startsWith('line '));
  return [message, ...(useful ? details.map((l) => `  ${l}`) : [])];
}

export function printError(err: unknown, out: NodeJS.WritableStream = process.stderr): void {
  const [first, ...rest] = errorLines(err);
  out.write(`temper: ${first}\n${rest.map((l) => `${l}\n`).join('')}`);
}

/**
 * What the resource verbs print: `-o json` writes the resource exactly as the API returned it
 * (a list: the array of resources of every page); `-o text` writes aligned key/value lines for
 * one resource and a table for a list.
 */
import { InvalidArgumentError } from 'commander';

export type OutputFormat = 'json' | 'text';

export function parseOutputFormat(value: string): OutputFormat {
  if (value !== 'json' && value !== 'text')
    throw new InvalidArgumentError(`expected json or text, not '${value}'`);
  return value;
}

export interface Column {
  header: string;
  get(resource: Record<string, unknown>): unknown;
}

/** A column reading a dotted path (`jobProgress.step`). */
export function field(header: string, path: string): Column {
  return { header, get: (r) => at(r, path) };
}

export function at(value: unknown, path: string): unknown {
  let cur = value;
  for (const key of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

export function cell(value: unknown): string {
  if (value === undefined || value === null || value === '') return '-';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

export function formatTable(rows: Record<string, unknown>[], columns: Column[]): string {
  const grid = [
    columns.map((c) => c.header),
    ...rows.map((r) => columns.map((c) => cell(c.get(r)))),
  ];
  const widths = columns.map((_, i) => Math.max(...grid.map((line) => line[i]!.length)));
  return grid
    .map((line) =>
      line
        .map((v, i) => (i === line.length - 1 ? v : v.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** Nested objects become dotted keys (`jobProgress.step`); arrays stay JSON. */
function flatten(obj: Record<string, unknown>, prefix = ''): [string, unknown][] {
  return Object.entries(obj).flatMap(([k, v]) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0
      ? flatten(v as Record<string, unknown>, `${prefix}${k}.`)
      : [[`${prefix}${k}`, v] as [string, unknown]],
  );
}

export function formatKeyValue(resource: Record<string, unknown>): string {
  const entries = flatten(resource);
  const width = Math.max(0, ...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${k.padEnd(width)}  ${cell(v)}\n`).join('');
}

export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** One resource in the chosen format. */
export function printResource(
  resource: Record<string, unknown>,
  format: OutputFormat,
  out: NodeJS.WritableStream = process.stdout,
): void {
  out.write(format === 'json' ? formatJson(resource) : formatKeyValue(resource));
}

export function printList(
  resources: Record<string, unknown>[],
  columns: Column[],
  format: OutputFormat,
  out: NodeJS.WritableStream = process.stdout,
): void {
  out.write(format === 'json' ? formatJson(resources) : formatTable(resources, columns));
}

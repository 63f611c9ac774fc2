// JSON Lines reading with errors that name the file and line.
import { readFile } from 'node:fs/promises';
import type { z } from 'zod';

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

/** Parses every non-blank line with `schema`; the first bad line fails the whole file. */
export function parseJsonl<T extends z.ZodType>(
  text: string,
  schema: T,
  source: string,
): z.output<T>[] {
  const rows: z.output<T>[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new DatasetError(`${source}:${i + 1}: invalid JSON (${(err as Error).message})`);
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new DatasetError(
        `${source}:${i + 1}: ${issue.path.join('.') || '(line)'}: ${issue.message}`,
      );
    }
    rows.push(parsed.data);
  }
  if (rows.length === 0) throw new DatasetError(`${source}: no examples`);
  return rows;
}

export async function readJsonl<T extends z.ZodType>(
  path: string,
  schema: T,
): Promise<z.output<T>[]> {
  return parseJsonl(await readFile(path, 'utf8'), schema, path);
}

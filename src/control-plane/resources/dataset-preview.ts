/**
 * `GET datasets/{id}/preview?limit=N`: the first N lines of a dataset's JSONL (default 20, at
 * most 200), each parsed, with its 1-based line number, read as a stream so a large file
 * costs only the lines shown. A line that is not JSON is shown as text with the parser's
 * message; whether the file as a whole is valid is `:validate`'s answer.
 */
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { invalid, zodMessage } from '../http/errors.js';

export const previewQuery = z.looseObject({
  limit: z.coerce.number().int().min(1).max(200).default(20),
});

export interface PreviewLine {
  line: number;
  record?: unknown;
  text?: string;
  error?: string;
}

export function previewLimit(query: unknown): number {
  const q = previewQuery.safeParse(query ?? {});
  if (!q.success) throw invalid(zodMessage(q.error, 'query'));
  return q.data.limit;
}

/** The first `limit` non-blank lines of `stream`; the stream is closed after them. */
export async function previewLines(stream: Readable, limit: number): Promise<PreviewLine[]> {
  const out: PreviewLine[] = [];
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  try {
    for await (const text of lines) {
      n += 1;
      if (text.trim() === '') continue;
      try {
        out.push({ line: n, record: JSON.parse(text) });
      } catch (err) {
        out.push({ line: n, text: text.slice(0, 2000), error: (err as Error).message });
      }
      if (out.length >= limit) break;
    }
  } finally {
    lines.close();
    stream.destroy();
  }
  return out;
}

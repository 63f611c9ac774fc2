// Small helpers shared by the file://, s3:// and gs:// stores.
import { Readable } from 'node:stream';
import { ObjectStoreError } from './types.js';

/**
 * The order list() returns: by the keys' UTF-8 bytes, which is the order S3 and GCS list
 * in (JavaScript's `<` compares UTF-16 code units and differs above U+FFFF).
 */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * A list() prefix: '' (everything) or the start of a key. Its complete segments (those
 * followed by '/') obey the key rules; the last, partial one may be anything but '\' or NUL.
 */
export function validatePrefix(prefix: string): string {
  if (prefix.length > 1024)
    throw new ObjectStoreError(
      'invalid_key',
      `list prefix must be at most 1024 characters (got ${prefix.length})`,
    );
  if (prefix.startsWith('/') || prefix.includes('\\') || prefix.includes('\0'))
    throw new ObjectStoreError(
      'invalid_key',
      `list prefix '${prefix}' must be relative and '/'-separated`,
    );
  const segments = prefix.split('/');
  segments.pop();
  for (const seg of segments)
    if (seg === '' || seg === '.' || seg === '..')
      throw new ObjectStoreError(
        'invalid_key',
        `list prefix '${prefix}' has an empty, '.' or '..' segment`,
      );
  return prefix;
}

/** Checks a key listed by a server; keys that the stores could not address are skipped. */
export function isValidKey(key: string): boolean {
  if (
    key.length === 0 ||
    key.length > 1024 ||
    key.startsWith('/') ||
    key.includes('\\') ||
    key.includes('\0')
  )
    return false;
  return key.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

export function isReadable(body: unknown): body is Readable {
  return body instanceof Readable;
}

/** A Buffer view of an in-memory body (no copy for Buffers and Uint8Arrays). */
export function bodyToBuffer(body: Buffer | Uint8Array | string): Buffer {
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (Buffer.isBuffer(body)) return body;
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks);
}

/** Runs fn over items with at most `limit` calls in flight; results keep the input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

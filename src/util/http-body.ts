/**
 * Reading a request body with a ceiling. Every HTTP server of ours that reads a body whole
 * (JSON requests) goes through here, so a body larger than the limit is refused before it is
 * buffered: at once when its Content-Length says so, otherwise as soon as the bytes received
 * pass the limit (chunked uploads). The caller answers 413 and closes the connection.
 */
import type { IncomingMessage } from 'node:http';

/** Default ceiling of a JSON request body (completions with long token-id prompts fit). */
export const DEFAULT_BODY_LIMIT = 32 * 1024 * 1024;

export class BodyTooLargeError extends Error {
  readonly status = 413;
  constructor(readonly limit: number) {
    super(`request body exceeds ${limit} bytes: send a smaller body`);
    this.name = 'BodyTooLargeError';
  }
}

export async function readBodyLimited(
  req: IncomingMessage,
  limit = DEFAULT_BODY_LIMIT,
): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new BodyTooLargeError(limit);
  const parts: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw new BodyTooLargeError(limit);
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts, size);
}

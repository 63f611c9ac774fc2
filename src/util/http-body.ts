/**
 * Reading a request body with a ceiling. Every HTTP server of ours that reads a body whole
 * (JSON requests) goes through here, so a body larger than the limit is refused before it is
 * buffered: at once when its Content-Length says so, otherwise as soon as the bytes received
 * pass the limit (chunked uploads). The caller answers 413.
 *
 * A refused body is discarded, not kept, and the connection is not torn down at once: a
 * client still sending would get a reset (EPIPE / ECONNRESET) instead of the 413, since the
 * kernel drops unread data with an RST when a socket closes under it. So the rest of the body
 * is read and thrown away for a short grace period (a "lingering close", as web servers do),
 * long enough for the client to see the answer and stop, and the socket is destroyed after it.
 */
import type { IncomingMessage } from 'node:http';

/** Default ceiling of a JSON request body (completions with long token-id prompts fit). */
export const DEFAULT_BODY_LIMIT = 32 * 1024 * 1024;

/** How long a refused body is drained before its connection is closed. */
export const REFUSED_BODY_LINGER_MS = 2_000;

export class BodyTooLargeError extends Error {
  readonly status = 413;
  constructor(readonly limit: number) {
    super(`request body exceeds ${limit} bytes: send a smaller body`);
    this.name = 'BodyTooLargeError';
  }
}

export function readBodyLimited(req: IncomingMessage, limit = DEFAULT_BODY_LIMIT): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    discardRest(req);
    return Promise.reject(new BodyTooLargeError(limit));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const detach = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size <= limit) return void parts.push(c);
      detach();
      parts.length = 0;
      discardRest(req);
      reject(new BodyTooLargeError(limit));
    };
    const onEnd = () => {
      detach();
      resolve(Buffer.concat(parts, size));
    };
    const onError = (err: Error) => {
      detach();
      reject(err);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** Reads and drops what is left of a refused body; closes the connection after the linger. */
function discardRest(req: IncomingMessage): void {
  req.resume();
  if (req.complete) return;
  const timer = setTimeout(() => req.socket.destroy(), REFUSED_BODY_LINGER_MS);
  timer.unref();
  req.once('end', () => clearTimeout(timer));
  req.socket.once('close', () => clearTimeout(timer));
}

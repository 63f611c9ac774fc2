/**
 * Signed upload URLs (`:getUploadEndpoint`, then a PUT per file), as evaluators and models use
 * them: the client sends no API key with the PUT, so the random token in the URL is the
 * permission. Only the token's sha256 is stored, with an expiry; a PUT is checked in constant
 * time, and its body is cut off once it passes the size announced for the file.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Transform } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ApiError, invalid } from './errors.js';

/** How long a signed URL stays valid. */
export const UPLOAD_URL_TTL_MS = 60 * 60 * 1000;

/** What a resource row keeps of the URLs it handed out. */
export const uploadGrantSchema = z.object({
  tokenSha256: z.string(),
  expireTime: z.string(),
});
export type UploadGrant = z.output<typeof uploadGrantSchema>;

const sha256 = (data: string) => createHash('sha256').update(data).digest('hex');

/** A new token for the URLs and the grant to store beside them. */
export function grantUpload(now = Date.now()): { token: string; grant: UploadGrant } {
  const token = randomBytes(32).toString('base64url');
  return {
    token,
    grant: {
      tokenSha256: sha256(token),
      expireTime: new Date(now + UPLOAD_URL_TTL_MS).toISOString(),
    },
  };
}

export function uploadDenied(): ApiError {
  return new ApiError(
    'PERMISSION_DENIED',
    'this upload URL is not valid (wrong or expired token, or another file): ask :getUploadEndpoint for a new one',
  );
}

/**
 * Throws `uploadDenied` unless the request's `?token=` matches an unexpired grant, and a clear
 * 400 when its Content-Length differs from the `bytes` announced for `filename`.
 */
export function checkSignedPut(
  req: FastifyRequest,
  grant: UploadGrant,
  filename: string,
  bytes: number,
): void {
  const given = (req.query as Record<string, unknown>).token;
  const a = Buffer.from(sha256(typeof given === 'string' ? given : ''), 'hex');
  const b = Buffer.from(grant.tokenSha256, 'hex');
  if (a.length !== b.length || !timingSafeEqual(a, b) || Date.parse(grant.expireTime) < Date.now())
    throw uploadDenied();
  const length = req.headers['content-length'];
  if (length !== undefined && Number(length) !== bytes)
    throw invalid(
      `${filename}: Content-Length ${length} is not the ${bytes} bytes announced to :getUploadEndpoint`,
    );
}

/** The PUT's body, failing once more than the announced `bytes` of `filename` pass. */
export function cappedBody(req: FastifyRequest, bytes: number, filename: string) {
  let seen = 0;
  return (req.body as NodeJS.ReadableStream).pipe(
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length;
        if (seen > bytes)
          done(
            invalid(
              `${filename} is larger than the ${bytes} bytes announced to :getUploadEndpoint`,
            ),
          );
        else done(null, chunk);
      },
    }),
  );
}

/** A 400 when the stored object's size is not the announced one (a short body). */
export function checkReceivedSize(filename: string, received: number | undefined, bytes: number) {
  if (received !== bytes)
    throw invalid(
      `${filename}: received ${received ?? 0} bytes, not the ${bytes} announced to :getUploadEndpoint`,
    );
}

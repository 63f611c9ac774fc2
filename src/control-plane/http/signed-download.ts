/**
 * Signed download URLs (`:getDownloadEndpoint`, then a GET per file), for models and datasets
 * alike. Like an upload URL the GET carries no API key: the URL is the permission. Here the
 * token is an HMAC, under the control plane's URL-signing key, of the resource name (so of its
 * account), the resource's creation time (a resource deleted and made again under the same id
 * does not inherit old URLs), the file and the expiry: nothing is stored per URL, a URL names
 * exactly one file of one resource, and changing any part of it (another account, another file,
 * a later expiry) makes the token wrong. Tokens are compared in constant time.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

/** How long a signed download URL stays valid. */
export const DOWNLOAD_URL_TTL_MS = 60 * 60 * 1000;

/** What a URL is for: one file of one resource incarnation. */
export interface DownloadTarget {
  /** accounts/{a}/{collection}/{id} */
  name: string;
  /** The resource's createTime ('' for the bundled catalog, which never changes in place). */
  incarnation: string;
  file: string;
}

function tokenFor(key: Buffer, t: DownloadTarget, expires: number): Buffer {
  return createHmac('sha256', key)
    .update(`temper download\n${t.name}\n${t.incarnation}\n${t.file}\n${expires}`)
    .digest();
}

/** The `?expires=…&token=…` query of a signed URL, and when it expires. */
export function signDownload(
  key: Buffer,
  target: DownloadTarget,
  now = Date.now(),
): { query: string; expireTime: string } {
  const expires = Math.floor((now + DOWNLOAD_URL_TTL_MS) / 1000);
  const token = tokenFor(key, target, expires).toString('base64url');
  return {
    query: `expires=${expires}&token=${token}`,
    expireTime: new Date(expires * 1000).toISOString(),
  };
}

/** The refusal for a URL that does not match what was signed (or names nothing). */
export function downloadDenied(): ApiError {
  return new ApiError(
    'PERMISSION_DENIED',
    'this download URL is not valid: its token does not match this account, resource and file (altered, or for another one): ask :getDownloadEndpoint for a new one',
  );
}

/** Throws `downloadDenied` unless the request's token signs `target`, then checks expiry. */
export function checkSignedGet(
  key: Buffer,
  req: FastifyRequest,
  target: DownloadTarget,
  now = Date.now(),
): void {
  const q = req.query as Record<string, unknown>;
  const expires = typeof q.expires === 'string' && /^\d{1,12}$/.test(q.expires) ? q.expires : '';
  const given = Buffer.from(typeof q.token === 'string' ? q.token : '', 'base64url');
  const want = tokenFor(key, target, Number(expires));
  if (!expires || given.length !== want.length || !timingSafeEqual(given, want))
    throw downloadDenied();
  if (Number(expires) * 1000 < now)
    throw new ApiError(
      'PERMISSION_DENIED',
      `this download URL expired at ${new Date(Number(expires) * 1000).toISOString()}: ask :getDownloadEndpoint for a new one`,
    );
}

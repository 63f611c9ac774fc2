/**
 * Where a deployment may hot-load from (issue 14 item 2). A hot-load bucket is read with the
 * platform's own storage credentials, so a URL a user gives must lie inside that user's
 * account folder of the checkpoint store (`<checkpoint store>/accounts/{account}/...`), or
 * under a prefix the operator allows (`TEMPER_BUCKET_ALLOWLIST`, comma-separated storage URL
 * prefixes, one schema below). Only storage schemes are buckets: `s3://`, `gs://`, `file://`
 * (or a bare path); anything else (`http://169.254.169.254/...`) is refused at create.
 */
import { join, relative, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { fileUrlToRoot } from '../../checkpoints/object-store/index.js';
import { invalid } from '../http/errors.js';

const STORAGE_SCHEMES = new Set(['s3', 'gs', 'file']);

/** The operator's allow-list: storage URL prefixes any account may hot-load from. */
export const bucketSettingsSchema = z.object({
  allowedPrefixes: z
    .array(
      z
        .string()
        .regex(
          /^(s3|gs):\/\/[^/\s]+(\/[^\s]*)?$|^file:\/\/\/\S*$/,
          'TEMPER_BUCKET_ALLOWLIST entries must be s3://bucket[/prefix], gs://bucket[/prefix] or file:///path',
        )
        .transform((s) => s.replace(/\/+$/, '')),
    )
    .default([]),
});
export type BucketSettings = z.output<typeof bucketSettingsSchema>;

export function bucketSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): BucketSettings {
  const raw = env.TEMPER_BUCKET_ALLOWLIST;
  return bucketSettingsSchema.parse({
    allowedPrefixes: raw
      ? raw
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : [],
  });
}

let fromEnv: BucketSettings | undefined;
/** The environment's settings, parsed once. */
function envSettings(): BucketSettings {
  fromEnv ??= bucketSettingsFromEnv();
  return fromEnv;
}

const schemeOf = (url: string) => /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();

/** Is `url` at or under `prefix` (whole path segments)? */
const under = (url: string, prefix: string) => url === prefix || url.startsWith(`${prefix}/`);

/**
 * The bucket URL a user gave, if the account may use it; a 400 naming the rule otherwise.
 * `checkpointUrl` is the platform's checkpoint store (its account folders are the prefixes).
 */
export function confineBucketUrl(
  url: string,
  account: string,
  checkpointUrl: string,
  settings: BucketSettings = envSettings(),
): string {
  if (url.endsWith('/')) throw invalid('hotLoadBucketUrl must not end with a slash');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing them is the point
  if (/[\u0000-\u001f\u007f]/.test(url))
    throw invalid('hotLoadBucketUrl contains a control character');
  const scheme = schemeOf(url) ?? 'file';
  if (!STORAGE_SCHEMES.has(scheme))
    throw invalid(
      `hotLoadBucketUrl: ${scheme}:// is not a storage URL: give s3://bucket/prefix, gs://bucket/prefix or file:///path`,
    );
  if (url.split('/').some((seg) => seg === '..' || seg === '.'))
    throw invalid('hotLoadBucketUrl must not contain . or .. segments');
  if (settings.allowedPrefixes.some((p) => under(url, p))) return url;
  const storeScheme = schemeOf(checkpointUrl) ?? 'file';
  if (scheme === 'file' && storeScheme === 'file') {
    const accountDir = join(fileUrlToRoot(checkpointUrl), 'accounts', account);
    const rel = relative(accountDir, fileUrlToRoot(url));
    if (rel.startsWith('..') || rel.startsWith(sep) || rel === '')
      throw invalid(
        `hotLoadBucketUrl: a file:// bucket must lie under ${pathToFileURL(accountDir).href}/`,
      );
    return url;
  }
  const own = `${checkpointUrl.replace(/\/+$/, '')}/accounts/${account}`;
  if (scheme === storeScheme && url.startsWith(`${own}/`)) return url;
  throw invalid(
    `hotLoadBucketUrl: ${url} is outside your account's prefix ${own}/ and the operator's allow-list (TEMPER_BUCKET_ALLOWLIST)`,
  );
}

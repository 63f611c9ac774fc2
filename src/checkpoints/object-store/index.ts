// Opens the object store a URL names:
//   /abs/dir, ./rel/dir, file:///abs/dir, file://localhost/abs/dir  -> file:// store (default)
//   file://rel/dir, file:rel/dir                                     -> file:// store, relative to cwd
//   s3://bucket[/prefix]                                             -> S3 (or an S3-compatible server)
//   gs://bucket[/prefix]                                             -> Google Cloud Storage
// The S3 and GCS client libraries are loaded only when such a URL is opened.
import { isAbsolute, resolve } from 'node:path';
import { FileObjectStore, type FileObjectStoreOptions } from './file.js';
import type { GcsObjectStoreOptions } from './gcs.js';
import type { S3ObjectStoreOptions } from './s3.js';
import { type ObjectStore, ObjectStoreError } from './types.js';

export { compareKeys } from './common.js';
export { FileObjectStore, type FileObjectStoreOptions } from './file.js';
export type { GcsLocation, GcsObjectStoreOptions } from './gcs.js';
export type { S3Location, S3ObjectStoreOptions } from './s3.js';
export * from './types.js';

export interface OpenObjectStoreOptions {
  /** Base of relative file paths; default process.cwd(). */
  cwd?: string;
  file?: FileObjectStoreOptions;
  s3?: S3ObjectStoreOptions;
  gcs?: GcsObjectStoreOptions;
}

export const OBJECT_STORE_SCHEMES = ['file', 's3', 'gs'] as const;

function malformed(url: string, why: string): ObjectStoreError {
  return new ObjectStoreError('invalid_key', `malformed object store URL '${url}': ${why}`);
}

/** The directory a file:// URL or plain path names, made absolute. */
export function fileUrlToRoot(url: string, cwd = process.cwd()): string {
  let path: string;
  if (/^file:/i.test(url)) {
    let rest = url.slice('file:'.length);
    if (rest.startsWith('//')) {
      rest = rest.slice(2);
      // file://localhost/abs is the standard spelling of file:///abs.
      if (/^localhost\//i.test(rest)) rest = rest.slice('localhost'.length);
    }
    try {
      path = decodeURIComponent(rest);
    } catch {
      throw malformed(url, 'bad percent-encoding');
    }
  } else {
    path = url;
  }
  if (path.length === 0)
    throw malformed(url, 'no directory given (file:///abs/dir or file://rel/dir)');
  if (path.includes('\0')) throw malformed(url, 'the path contains a NUL character');
  return isAbsolute(path) ? resolve(path) : resolve(cwd, path);
}

/** Opens the store for `url` (see the table at the top of this file). */
export async function openObjectStore(
  url: string,
  opts: OpenObjectStoreOptions = {},
): Promise<ObjectStore> {
  if (typeof url !== 'string' || url.trim() === '') throw malformed(String(url), 'empty');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  // A one-letter "scheme" is a Windows drive (C:\...), which a plain path on this system is not.
  if (scheme === undefined || (scheme.length === 1 && !url.includes('://'))) {
    return new FileObjectStore(fileUrlToRoot(url, opts.cwd), opts.file);
  }
  switch (scheme) {
    case 'file':
      return new FileObjectStore(fileUrlToRoot(url, opts.cwd), opts.file);
    case 's3': {
      const { S3ObjectStore, parseS3Url } = await import('./s3.js');
      return new S3ObjectStore(parseS3Url(url), opts.s3);
    }
    case 'gs': {
      const { GcsObjectStore, parseGcsUrl } = await import('./gcs.js');
      return new GcsObjectStore(parseGcsUrl(url), opts.gcs);
    }
    default:
      throw new ObjectStoreError(
        'invalid_key',
        `unknown object store scheme '${scheme}:' in '${url}': use file:// (a directory), s3://bucket/prefix or gs://bucket/prefix`,
      );
  }
}

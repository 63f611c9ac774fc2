// The one interface every object store implements (file://, s3://, gs://). Checkpoint code
// talks only to this; the store is chosen by URL scheme (see index.ts).
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  /** Key relative to the store root, '/'-separated, never starting with '/'. */
  key: string;
  size: number;
  /** Last modification time. */
  updated: Date;
  /** Store-specific version token (ETag / generation / mtime+size); changes on overwrite. */
  etag: string;
}

export interface PutOptions {
  /**
   * Create only if absent (S3 If-None-Match: *, GCS ifGenerationMatch: 0, O_EXCL on files).
   * The commit point of atomic checkpoints: the first writer wins, the others get
   * ObjectStoreError code 'already_exists'.
   */
  ifAbsent?: boolean;
  contentType?: string;
}

export interface ObjectStore {
  /** The store's URL (file:///abs/dir, s3://bucket/prefix, gs://bucket/prefix). */
  readonly url: string;
  put(
    key: string,
    body: Buffer | Uint8Array | string | Readable,
    opts?: PutOptions,
  ): Promise<ObjectInfo>;
  /** Streams an object; ObjectStoreError 'not_found' when absent. */
  getStream(key: string): Promise<Readable>;
  get(key: string): Promise<Buffer>;
  /** null when absent. */
  stat(key: string): Promise<ObjectInfo | null>;
  /** Every object whose key starts with prefix, sorted by key. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Deleting an absent key is not an error. */
  delete(key: string): Promise<void>;
}

export type ObjectStoreErrorCode = 'not_found' | 'already_exists' | 'invalid_key' | 'unavailable';

export class ObjectStoreError extends Error {
  constructor(
    readonly code: ObjectStoreErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'ObjectStoreError';
  }
}

/** Keys are relative, '/'-separated, with no empty, '.' or '..' segments (no path traversal). */
export function validateKey(key: string): string {
  if (key.length === 0 || key.length > 1024)
    throw new ObjectStoreError(
      'invalid_key',
      `object key must be 1-1024 characters (got ${key.length})`,
    );
  if (key.startsWith('/') || key.includes('\\') || key.includes('\0'))
    throw new ObjectStoreError(
      'invalid_key',
      `object key '${key}' must be relative and '/'-separated`,
    );
  for (const seg of key.split('/'))
    if (seg === '' || seg === '.' || seg === '..')
      throw new ObjectStoreError(
        'invalid_key',
        `object key '${key}' has an empty, '.' or '..' segment`,
      );
  return key;
}

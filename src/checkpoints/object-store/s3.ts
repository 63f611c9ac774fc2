// s3://bucket/prefix object store on @aws-sdk/client-s3. Streams go up as multipart uploads
// (@aws-sdk/lib-storage), which S3 makes visible only when the upload completes; ifAbsent is
// S3's conditional write (If-None-Match: *), checked by the server atomically.

import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  bodyToBuffer,
  compareKeys,
  errorMessage,
  isReadable,
  isValidKey,
  readAll,
  validatePrefix,
} from './common.js';
import {
  type ObjectInfo,
  type ObjectStore,
  ObjectStoreError,
  type PutOptions,
  validateKey,
} from './types.js';

export interface S3ObjectStoreOptions {
  /**
   * Endpoint of an S3-compatible server (http://127.0.0.1:9000). Default: the
   * AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL environment variable, else AWS.
   */
  endpoint?: string;
  /** Default: AWS_REGION, AWS_DEFAULT_REGION, the AWS config file; us-east-1 with a custom endpoint. */
  region?: string;
  /** Default: the SDK's chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, profiles, roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /**
   * Path-style URLs (http://host/bucket/key) instead of virtual-hosted ones. Default: true
   * when the endpoint is an IP address or localhost (local servers), else false.
   */
  forcePathStyle?: boolean;
  /** Part size of multipart uploads of streamed bodies; default 8 MiB (S3's minimum is 5 MiB). */
  partSize?: number;
  /** Parts uploaded at once per streamed body; default 4. */
  queueSize?: number;
  /** Use this client instead of making one (the options above are then ignored). */
  client?: S3Client;
}

export interface S3Location {
  bucket: string;
  /** '' or 'a/b' (no leading or trailing '/'). */
  prefix: string;
}

const MIB = 1024 * 1024;
/** Retries of a conditional write that S3 answers with 409 ConditionalRequestConflict. */
const CONFLICT_RETRIES = 3;

function isLocalHost(endpoint: string): boolean {
  try {
    const host = new URL(endpoint).hostname;
    return host === 'localhost' || /^\d+\.\d+\.\d+\.\d+$/.test(host) || host.startsWith('[');
  } catch {
    return false;
  }
}

interface S3ErrorShape {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function s3ErrorInfo(error: unknown): { name: string; status: number | undefined } {
  const e = (typeof error === 'object' && error !== null ? error : {}) as S3ErrorShape;
  return { name: e.Code ?? e.name ?? '', status: e.$metadata?.httpStatusCode };
}

export class S3ObjectStore implements ObjectStore {
  readonly url: string;
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(location: S3Location, opts: S3ObjectStoreOptions = {}) {
    this.bucket = location.bucket;
    this.prefix = location.prefix;
    this.url = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
    this.partSize = Math.max(opts.partSize ?? 8 * MIB, 5 * MIB);
    this.queueSize = Math.max(1, opts.queueSize ?? 4);
    if (opts.client) {
      this.client = opts.client;
      return;
    }
    const endpoint =
      opts.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
    const region =
      opts.region ??
      process.env.AWS_REGION ??
      process.env.AWS_DEFAULT_REGION ??
      (endpoint ? 'us-east-1' : undefined);
    const config: S3ClientConfig = {
      forcePathStyle: opts.forcePathStyle ?? (endpoint !== undefined && isLocalHost(endpoint)),
    };
    if (endpoint) config.endpoint = endpoint;
    if (region) config.region = region;
    if (opts.credentials) config.credentials = opts.credentials;
    this.client = new S3Client(config);
  }

  private fullKey(key: string): string {
    validateKey(key);
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  async put(
    key: string,
    body: Buffer | Uint8Array | string | Readable,
    opts: PutOptions = {},
  ): Promise<ObjectInfo> {
    const Key = this.fullKey(key);
    const base = {
      Bucket: this.bucket,
      Key,
      ...(opts.contentType ? { ContentType: opts.contentType } : {}),
      ...(opts.ifAbsent ? { IfNoneMatch: '*' } : {}),
    };
    let etag: string | undefined;
    let size: number | undefined;
    if (isReadable(body)) {
      let counted = 0;
      let bodyError: unknown;
      async function* counting(source: Readable): AsyncGenerator<Buffer> {
        try {
          for await (const chunk of source) {
            const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
            counted += buf.byteLength;
            yield buf;
          }
        } catch (error) {
          bodyError = error;
          throw error;
        }
      }
      const upload = new Upload({
        client: this.client,
        params: { ...base, Body: Readable.from(counting(body)) },
        partSize: this.partSize,
        queueSize: this.queueSize,
        leavePartsOnError: false,
      });
      try {
        etag = (await upload.done()).ETag;
      } catch (error) {
        // The caller's body stream failed: its error, as it is (the upload was aborted).
        if (bodyError !== undefined) throw bodyError;
        throw this.mapError(error, key, 'put');
      }
      size = counted;
    } else {
      const buf = bodyToBuffer(body);
      // (The SDK retries failed requests; should a conditional put succeed but its answer be
      // lost, the retry sees the object and reports already_exists: S3's own semantics.)
      for (let attempt = 0; ; attempt++) {
        try {
          etag = (
            await this.client.send(
              new PutObjectCommand({ ...base, Body: buf, ContentLength: buf.byteLength }),
            )
          ).ETag;
          break;
        } catch (error) {
          // A concurrent conditional write to the same key: S3 asks to retry.
          if (
            s3ErrorInfo(error).name === 'ConditionalRequestConflict' &&
            attempt < CONFLICT_RETRIES
          )
            continue;
          throw this.mapError(error, key, 'put');
        }
      }
      size = buf.byteLength;
    }
    // The put answer has no modification time; ask for it.
    const info = await this.stat(key).catch(() => null);
    if (info && (etag === undefined || info.etag === stripQuotes(etag))) return info;
    return { key, size, updated: new Date(), etag: stripQuotes(etag ?? '') };
  }

  async getStream(key: string): Promise<Readable> {
    const Key = this.fullKey(key);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      const body = out.Body;
      if (body instanceof Readable) return body;
      if (body === undefined) return Readable.from([]);
      throw new ObjectStoreError(
        'unavailable',
        `S3 answered GetObject for '${key}' with an unexpected body type`,
      );
    } catch (error) {
      throw this.mapError(error, key, 'get');
    }
  }

  async get(key: string): Promise<Buffer> {
    const stream = await this.getStream(key);
    try {
      return await readAll(stream);
    } catch (error) {
      throw this.mapError(error, key, 'get');
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const Key = this.fullKey(key);
    let out: HeadObjectCommandOutput;
    try {
      out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
    } catch (error) {
      const { name, status } = s3ErrorInfo(error);
      if (status === 404 || name === 'NotFound' || name === 'NoSuchKey') return null;
      throw this.mapError(error, key, 'stat');
    }
    return {
      key,
      size: out.ContentLength ?? 0,
      updated: out.LastModified ?? new Date(0),
      etag: stripQuotes(out.ETag ?? ''),
    };
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    validatePrefix(prefix);
    const root = this.prefix ? `${this.prefix}/` : '';
    const infos: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      let out: ListObjectsV2CommandOutput;
      try {
        out = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: root + prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        );
      } catch (error) {
        throw this.mapError(error, prefix, 'list');
      }
      for (const obj of out.Contents ?? []) {
        if (obj.Key === undefined || !obj.Key.startsWith(root)) continue;
        const key = obj.Key.slice(root.length);
        // Objects written around this store under names it cannot address.
        if (!isValidKey(key)) continue;
        infos.push({
          key,
          size: obj.Size ?? 0,
          updated: obj.LastModified ?? new Date(0),
          etag: stripQuotes(obj.ETag ?? ''),
        });
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return infos.sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(key: string): Promise<void> {
    const Key = this.fullKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (error) {
      const { name, status } = s3ErrorInfo(error);
      if (status === 404 && name !== 'NoSuchBucket') return;
      throw this.mapError(error, key, 'delete');
    }
  }

  private mapError(error: unknown, key: string, op: string): Error {
    if (error instanceof ObjectStoreError) return error;
    const { name, status } = s3ErrorInfo(error);
    if (name === 'NoSuchBucket')
      return new ObjectStoreError(
        'unavailable',
        `S3 bucket '${this.bucket}' does not exist (${this.url})`,
        { cause: error },
      );
    if (status === 412 || name === 'PreconditionFailed')
      return new ObjectStoreError(
        'already_exists',
        `object '${key}' already exists in ${this.url}`,
        { cause: error },
      );
    if (status === 404 || name === 'NoSuchKey' || name === 'NotFound')
      return new ObjectStoreError('not_found', `object '${key}' not found in ${this.url}`, {
        cause: error,
      });
    return new ObjectStoreError(
      'unavailable',
      `S3 ${op} of '${key}' in ${this.url} failed: ${name || 'error'}${status ? ` (HTTP ${status})` : ''}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}

function stripQuotes(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}

/** Parses s3://bucket[/prefix]. */
export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([^/?#]*)(\/[^?#]*)?$/.exec(url);
  if (!m)
    throw new ObjectStoreError(
      'invalid_key',
      `malformed S3 URL '${url}': expected s3://bucket[/prefix] (no query or fragment)`,
    );
  const bucket = m[1] ?? '';
  if (!/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/.test(bucket))
    throw new ObjectStoreError(
      'invalid_key',
      `malformed S3 URL '${url}': bucket '${bucket}' must be 3-63 characters of a-z, 0-9, '.', '-' and '_', starting and ending with a letter or digit`,
    );
  const path = m[2] ?? '';
  const trimmed = path.replace(/^\//, '').replace(/\/+$/, '');
  if (trimmed !== '' && !isValidKey(trimmed))
    throw new ObjectStoreError(
      'invalid_key',
      `malformed S3 URL '${url}': the prefix has an empty, '.' or '..' segment`,
    );
  return { bucket, prefix: trimmed };
}

// gs://bucket/prefix object store on @google-cloud/storage. An upload becomes visible only
// when it finalizes; ifAbsent is GCS's precondition ifGenerationMatch: 0 ("no live object"),
// checked by the server atomically.

import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Bucket, type File, Storage, type StorageOptions } from '@google-cloud/storage';
import {
  bodyToBuffer,
  compareKeys,
  errorMessage,
  isReadable,
  isValidKey,
  validatePrefix,
} from './common.js';
import {
  type ObjectInfo,
  type ObjectStore,
  ObjectStoreError,
  type PutOptions,
  validateKey,
} from './types.js';

export interface GcsObjectStoreOptions {
  /**
   * JSON API endpoint, for an emulator (http://127.0.0.1:4443). Default: the emulator
   * STORAGE_EMULATOR_HOST names (see emulatorEndpoint), else Google Cloud Storage. With a
   * custom endpoint requests are not authenticated unless useAuthWithCustomEndpoint is set.
   */
  apiEndpoint?: string;
  projectId?: string;
  /** Service-account key file; default: Application Default Credentials. */
  keyFilename?: string;
  useAuthWithCustomEndpoint?: boolean;
  /** Buffers larger than this go up as resumable uploads (streams always do); default 8 MiB. */
  resumableThreshold?: number;
  /** Use this client instead of making one (apiEndpoint, projectId, keyFilename are then ignored). */
  storage?: Storage;
}

export interface GcsLocation {
  bucket: string;
  /** '' or 'a/b' (no leading or trailing '/'). */
  prefix: string;
}

interface GcsMetadata {
  name?: string;
  size?: string | number;
  updated?: string;
  generation?: string | number;
}

function apiStatus(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  const code = (error as { code: unknown }).code;
  if (typeof code === 'number') return code;
  if (typeof code === 'string' && /^\d{3}$/.test(code)) return Number(code);
  return undefined;
}

/** Resolves once the stream has data or has ended, rejects if it fails first. */
function whenReadable(stream: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: unknown) => {
      stream.off('readable', onReadable);
      stream.off('end', onReadable);
      stream.off('error', onError);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onReadable = () => done();
    const onError = (error: unknown) => done(error ?? new Error('stream failed'));
    stream.once('readable', onReadable);
    stream.once('end', onReadable);
    stream.once('error', onError);
  });
}

/**
 * Listeners @google-cloud/storage (8.x) puts on the one HTTP response body of a download:
 * teeny-request pipes the body into its own request stream, retry-request into its stream,
 * and File#createReadStream into its validation pipeline, each with error and close listeners
 * (11 of each counted; Node warns past 10). A fixed number per download, gone when it ends, so
 * that body (and only it) may have this many without Node's possible-leak warning.
 */
const GCS_DOWNLOAD_BODY_LISTENERS = 16;

/**
 * The JSON API endpoint of the emulator STORAGE_EMULATOR_HOST names, in the form the other
 * Google clients (gcloud, Go, Python) and emulators document: `host:port` or
 * `http://host:port`, optionally ending in `/storage/v1`. Undefined when it is unset or empty.
 */
export function emulatorEndpoint(value: string | undefined): string | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `http://${v}`;
  return withScheme.replace(/\/+$/, '').replace(/\/storage\/v1$/, '');
}

/**
 * Builds a client while STORAGE_EMULATOR_HOST is hidden: @google-cloud/storage (8.x) would
 * take the variable verbatim as its base URL, so `http://host:port` (the form every other
 * client accepts) reaches the emulator without `/storage/v1` and every call is a 404. The
 * endpoint it names is passed as apiEndpoint instead (emulatorEndpoint). The constructor is
 * synchronous: nothing else runs while the variable is away.
 */
function withoutEmulatorVariable<T>(make: () => T): T {
  const saved = process.env.STORAGE_EMULATOR_HOST;
  if (saved === undefined) return make();
  delete process.env.STORAGE_EMULATOR_HOST;
  try {
    return make();
  } finally {
    process.env.STORAGE_EMULATOR_HOST = saved;
  }
}

export class GcsObjectStore implements ObjectStore {
  readonly url: string;
  readonly storage: Storage;
  private readonly bucket: Bucket;
  private readonly prefix: string;
  private readonly resumableThreshold: number;

  constructor(location: GcsLocation, opts: GcsObjectStoreOptions = {}) {
    this.prefix = location.prefix;
    this.url = `gs://${location.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
    this.resumableThreshold = opts.resumableThreshold ?? 8 * 1024 * 1024;
    if (opts.storage) {
      this.storage = opts.storage;
    } else {
      const config: StorageOptions = {};
      const apiEndpoint = opts.apiEndpoint ?? emulatorEndpoint(process.env.STORAGE_EMULATOR_HOST);
      if (apiEndpoint) config.apiEndpoint = apiEndpoint;
      if (opts.projectId) config.projectId = opts.projectId;
      if (opts.keyFilename) config.keyFilename = opts.keyFilename;
      if (opts.useAuthWithCustomEndpoint !== undefined)
        config.useAuthWithCustomEndpoint = opts.useAuthWithCustomEndpoint;
      this.storage = withoutEmulatorVariable(() => new Storage(config));
    }
    this.bucket = this.storage.bucket(location.bucket);
  }

  private file(key: string): File {
    validateKey(key);
    return this.bucket.file(this.prefix ? `${this.prefix}/${key}` : key);
  }

  async put(
    key: string,
    body: Buffer | Uint8Array | string | Readable,
    opts: PutOptions = {},
  ): Promise<ObjectInfo> {
    const file = this.file(key);
    const common = {
      ...(opts.contentType ? { contentType: opts.contentType } : {}),
      ...(opts.ifAbsent ? { preconditionOpts: { ifGenerationMatch: 0 } } : {}),
    };
    if (isReadable(body)) {
      const sink = file.createWriteStream({ ...common, resumable: true });
      let sinkError: unknown;
      sink.once('error', (error) => {
        sinkError = error;
      });
      try {
        await pipeline(body, sink);
      } catch (error) {
        // The upload is never finalized, so no object appears.
        throw sinkError !== undefined ? this.mapError(sinkError, key, 'put') : error;
      }
    } else {
      const buf = bodyToBuffer(body);
      try {
        await file.save(buf, { ...common, resumable: buf.byteLength > this.resumableThreshold });
      } catch (error) {
        throw this.mapError(error, key, 'put');
      }
    }
    const meta = file.metadata as GcsMetadata;
    if (meta.generation !== undefined && meta.size !== undefined) return this.info(key, meta);
    const info = await this.stat(key);
    if (!info)
      throw new ObjectStoreError(
        'unavailable',
        `object '${key}' vanished right after it was written to ${this.url}`,
      );
    return info;
  }

  private info(key: string, meta: GcsMetadata): ObjectInfo {
    return {
      key,
      size: Number(meta.size ?? 0),
      updated: meta.updated ? new Date(meta.updated) : new Date(0),
      etag: String(meta.generation ?? ''),
    };
  }

  async getStream(key: string): Promise<Readable> {
    const file = this.file(key);
    const stream = file.createReadStream();
    // The library emits the response body on its stream before it attaches its consumers.
    stream.once('response', (body: unknown) => {
      if (body instanceof EventEmitter) body.setMaxListeners(GCS_DOWNLOAD_BODY_LISTENERS);
    });
    try {
      // Errors (404) arrive on the stream; wait for the first byte or the end to see them.
      await whenReadable(stream);
    } catch (error) {
      stream.destroy();
      throw this.mapError(error, key, 'get');
    }
    return stream;
  }

  async get(key: string): Promise<Buffer> {
    // Through getStream, not File#download (the same download inside, whose response body
    // this store cannot reach to allow its listeners).
    const stream = await this.getStream(key);
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of stream) chunks.push(chunk as Buffer);
    } catch (error) {
      throw this.mapError(error, key, 'get');
    }
    return Buffer.concat(chunks);
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const file = this.file(key);
    try {
      const [meta] = await file.getMetadata();
      return this.info(key, meta as GcsMetadata);
    } catch (error) {
      if (apiStatus(error) === 404) return null;
      throw this.mapError(error, key, 'stat');
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    validatePrefix(prefix);
    const root = this.prefix ? `${this.prefix}/` : '';
    let files: File[];
    try {
      [files] = await this.bucket.getFiles({ prefix: root + prefix, autoPaginate: true });
    } catch (error) {
      throw this.mapError(error, prefix, 'list');
    }
    const infos: ObjectInfo[] = [];
    for (const f of files) {
      if (!f.name.startsWith(root)) continue;
      const key = f.name.slice(root.length);
      // Objects written around this store under names it cannot address.
      if (!isValidKey(key)) continue;
      infos.push(this.info(key, f.metadata as GcsMetadata));
    }
    return infos.sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(key: string): Promise<void> {
    const file = this.file(key);
    try {
      await file.delete({ ignoreNotFound: true });
    } catch (error) {
      throw this.mapError(error, key, 'delete');
    }
  }

  private mapError(error: unknown, key: string, op: string): ObjectStoreError {
    if (error instanceof ObjectStoreError) return error;
    const status = apiStatus(error);
    const message = errorMessage(error);
    if (status === 412)
      return new ObjectStoreError(
        'already_exists',
        `object '${key}' already exists in ${this.url}`,
        { cause: error },
      );
    if (status === 404) {
      // A put or a list that gets 404 cannot mean a missing object: the bucket is missing.
      if (op === 'put' || op === 'list' || (/bucket/i.test(message) && !/object/i.test(message)))
        return new ObjectStoreError(
          'unavailable',
          `GCS bucket '${this.bucket.name}' does not exist (${this.url}): ${message}`,
          { cause: error },
        );
      return new ObjectStoreError('not_found', `object '${key}' not found in ${this.url}`, {
        cause: error,
      });
    }
    return new ObjectStoreError(
      'unavailable',
      `GCS ${op} of '${key}' in ${this.url} failed${status ? ` (HTTP ${status})` : ''}: ${message}`,
      {
        cause: error,
      },
    );
  }
}

/** Parses gs://bucket[/prefix]. */
export function parseGcsUrl(url: string): GcsLocation {
  const m = /^gs:\/\/([^/?#]*)(\/[^?#]*)?$/.exec(url);
  if (!m)
    throw new ObjectStoreError(
      'invalid_key',
      `malformed GCS URL '${url}': expected gs://bucket[/prefix] (no query or fragment)`,
    );
  const bucket = m[1] ?? '';
  if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(bucket))
    throw new ObjectStoreError(
      'invalid_key',
      `malformed GCS URL '${url}': bucket '${bucket}' must be 3-222 characters of a-z, 0-9, '.', '-' and '_', starting and ending with a letter or digit`,
    );
  const trimmed = (m[2] ?? '').replace(/^\//, '').replace(/\/+$/, '');
  if (trimmed !== '' && !isValidKey(trimmed))
    throw new ObjectStoreError(
      'invalid_key',
      `malformed GCS URL '${url}': the prefix has an empty, '.' or '..' segment`,
    );
  return { bucket, prefix: trimmed };
}

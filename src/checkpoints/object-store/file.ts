// file:// object store: objects are plain files under a root directory, key 'a/b/c' at
// <root>/a/b/c. Every put writes a staging file first and then moves it into place in one
// step (rename, or link for ifAbsent), so no reader ever sees a partial object, and a writer
// killed mid-put leaves only a staging file that no listing shows. Staging files are written
// by the main thread in small synchronous pieces with turns of the event loop between them
// (local-io.ts says why), flushed to disk in the background as they grow, and fsynced once.
import { randomUUID } from 'node:crypto';
import type { Dirent, Stats } from 'node:fs';
import {
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
} from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { compareKeys, errorMessage, isReadable, mapLimit, validatePrefix } from './common.js';
import { IO_PIECE_BYTES, writeFullySync, YieldBudget } from './local-io.js';
import {
  type ObjectInfo,
  type ObjectStore,
  ObjectStoreError,
  type PutOptions,
  validateKey,
} from './types.js';

export interface FileObjectStoreOptions {
  /**
   * fsync every object (and the directory that receives it) before put() resolves, so a
   * committed object survives a power loss, not only a killed process. Default true.
   */
  fsync?: boolean;
}

/**
 * Where staging files live: a directory at the root whose name holds a backslash, which no
 * valid key can contain, so it never collides with an object and list() never shows it.
 * It is on the root's file system, so the final rename/link stays one atomic step.
 */
export const STAGING_DIR = '.temper\\staging';

const COMMIT_ATTEMPTS = 5;

function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' &&
    error !== null &&
    'code' in error &&
    typeof error.code === 'string'
    ? error.code
    : undefined;
}

/**
 * With fsync on, a staging file being written starts an fdatasync in the background each time
 * this many more bytes have been written, so the disk writes back while later pieces are
 * still being copied and the final fsync finds little left to do.
 */
const FLUSH_EVERY_BYTES = 32 << 20;

/** Called with each piece of a body right after it was written (e.g. to checksum it). */
export type OnWritten = (piece: Uint8Array) => void;

/**
 * Writes a staging file front to back: synchronous writes of IO_PIECE_BYTES pieces with
 * turns of the event loop in between (see local-io.ts for why), and background flushes.
 */
class StagingWriter {
  private position = 0;
  private flushedTo = 0;
  private flushing: Promise<void> | null = null;
  private flushFailure: { error: unknown } | null = null;
  private readonly budget = new YieldBudget();

  constructor(
    private readonly handle: FileHandle,
    private readonly fsync: boolean,
    private readonly ioError: (what: string, error: unknown) => Error,
  ) {}

  async write(bytes: Uint8Array, onWritten?: OnWritten): Promise<void> {
    for (let at = 0; at < bytes.byteLength; at += IO_PIECE_BYTES) {
      const piece = bytes.subarray(at, at + IO_PIECE_BYTES);
      try {
        writeFullySync(this.handle.fd, piece, this.position);
      } catch (error) {
        throw this.ioError('write', error);
      }
      this.position += piece.byteLength;
      onWritten?.(piece);
      this.startFlush();
      await this.budget.spent(piece.byteLength);
    }
  }

  /**
   * fsyncs (when on) and rethrows a failure of it or of a background flush. The final fsync
   * starts without waiting for a background flush still running: the two overlap (the file
   * system can commit both at once) instead of queueing one behind the other.
   */
  async finish(): Promise<void> {
    const sync = this.fsync
      ? this.handle.sync().then(
          () => null,
          (error: unknown) => this.ioError('fsync', error),
        )
      : null;
    await this.settle();
    const syncError = await sync;
    if (this.flushFailure) throw this.flushFailure.error;
    if (syncError) throw syncError;
  }

  /** Waits until nothing runs on the handle any more (never rejects). */
  async settle(): Promise<void> {
    await this.flushing;
  }

  private startFlush(): void {
    if (!this.fsync || this.flushing || this.position - this.flushedTo < FLUSH_EVERY_BYTES) return;
    this.flushedTo = this.position;
    this.flushing = this.handle.datasync().then(
      () => {
        this.flushing = null;
      },
      (error: unknown) => {
        this.flushing = null;
        this.flushFailure ??= { error: this.ioError('fsync', error) };
      },
    );
  }
}

export class FileObjectStore implements ObjectStore {
  readonly url: string;
  /** Absolute path of the root directory (created on the first put). */
  readonly root: string;
  private readonly fsync: boolean;
  private readonly stagingDir: string;

  constructor(root: string, opts: FileObjectStoreOptions = {}) {
    if (root.length === 0)
      throw new ObjectStoreError('invalid_key', 'file object store needs a root directory');
    if (root.includes('\0'))
      throw new ObjectStoreError('invalid_key', 'file object store root contains a NUL character');
    this.root = resolve(root);
    this.url = pathToFileURL(this.root).href;
    this.fsync = opts.fsync ?? true;
    this.stagingDir = join(this.root, STAGING_DIR);
  }

  private pathOf(key: string): string {
    validateKey(key);
    return join(this.root, ...key.split('/'));
  }

  async put(
    key: string,
    body: Buffer | Uint8Array | string | Readable,
    opts: PutOptions = {},
  ): Promise<ObjectInfo> {
    return this.putStaged(key, opts, async (out) => {
      if (!isReadable(body)) return out.write(typeof body === 'string' ? Buffer.from(body) : body);
      // Errors of the body stream itself reach the caller as they are.
      for await (const chunk of body)
        await out.write(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array));
    });
  }

  /**
   * put() for a body its caller hands over piece by piece (views, never copied: pieces must
   * stay unchanged until the promise settles). `onWritten` sees every byte right after it
   * was written, while it is still in the CPU cache: checksumming there costs far less than a
   * separate pass over the body. Same staging, fsync and atomic commit as put().
   */
  async putPieces(
    key: string,
    pieces: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
    opts: PutOptions & { onWritten?: OnWritten } = {},
  ): Promise<ObjectInfo> {
    return this.putStaged(key, opts, async (out) => {
      for await (const piece of pieces) await out.write(piece, opts.onWritten);
    });
  }

  /** Stages the body `fill` writes, then moves it into place as `key`. */
  private async putStaged(
    key: string,
    opts: PutOptions,
    fill: (out: StagingWriter) => Promise<void>,
  ): Promise<ObjectInfo> {
    const target = this.pathOf(key);
    const staged = await this.stage(fill);
    try {
      await this.commit(key, staged, target, opts.ifAbsent === true);
    } catch (error) {
      await rm(staged, { force: true });
      throw error;
    }
    const info = await this.stat(key);
    if (!info)
      throw new ObjectStoreError(
        'unavailable',
        `object '${key}' vanished right after it was written to ${this.url}`,
      );
    return info;
  }

  /** Writes a fresh staging file with `fill`, syncs and closes it, and returns its path. */
  private async stage(fill: (out: StagingWriter) => Promise<void>): Promise<string> {
    const staged = join(this.stagingDir, randomUUID());
    let handle: FileHandle;
    try {
      await mkdir(this.stagingDir, { recursive: true });
      handle = await open(staged, 'wx');
    } catch (error) {
      throw this.ioError(`cannot create a staging file in ${this.stagingDir}`, error);
    }
    const out = new StagingWriter(handle, this.fsync, (what, error) =>
      this.ioError(`cannot ${what} a staging file in ${this.stagingDir}`, error),
    );
    try {
      await fill(out);
      await out.finish();
      await this.io(`cannot close a staging file in ${this.stagingDir}`, () => handle.close());
      return staged;
    } catch (error) {
      await out.settle(); // nothing may still run on the handle we close
      await handle.close().catch(() => {});
      await rm(staged, { force: true });
      throw error;
    }
  }

  private async io<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.ioError(what, error);
    }
  }

  /** Moves the staging file to the target in one atomic step. */
  private async commit(
    key: string,
    staged: string,
    target: string,
    ifAbsent: boolean,
  ): Promise<void> {
    const dir = dirname(target);
    for (let attempt = 1; ; attempt++) {
      try {
        await mkdir(dir, { recursive: true });
      } catch (error) {
        const code = errnoCode(error);
        if (code === 'ENOTDIR' || code === 'EEXIST') throw this.conflict(key);
        throw this.ioError(`cannot create directory ${dir}`, error);
      }
      try {
        if (ifAbsent) {
          // link() fails with EEXIST when the target exists: check and create are one step.
          await link(staged, target);
          await unlink(staged);
        } else {
          await rename(staged, target);
        }
        break;
      } catch (error) {
        const code = errnoCode(error);
        // A concurrent delete() pruned the (then empty) directory between mkdir and here.
        if (code === 'ENOENT' && attempt < COMMIT_ATTEMPTS) continue;
        if (code === 'EEXIST' && ifAbsent) {
          const existing = await lstat(target).catch(() => undefined);
          if (existing?.isDirectory()) throw this.conflict(key);
          throw new ObjectStoreError(
            'already_exists',
            `object '${key}' already exists in ${this.url}`,
          );
        }
        if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR')
          throw this.conflict(key);
        throw this.ioError(`cannot move object '${key}' into place`, error);
      }
    }
    if (this.fsync) await this.syncDir(dir);
  }

  private async syncDir(dir: string): Promise<void> {
    let handle: FileHandle | undefined;
    try {
      handle = await open(dir, 'r');
      await handle.sync();
    } catch {
      // Some file systems refuse fsync on directories; the object itself is synced.
    } finally {
      await handle?.close().catch(() => {});
    }
  }

  /**
   * Removes staging files older than `olderThanMs` (default one day): what writers killed
   * mid-put left behind. Returns how many it removed. Never touches objects.
   */
  async sweepStaging(olderThanMs = 24 * 60 * 60 * 1000): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.stagingDir);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return 0;
      throw this.ioError(`cannot list ${this.stagingDir}`, error);
    }
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    for (const name of names) {
      const path = join(this.stagingDir, name);
      const st = await stat(path).catch(() => undefined);
      if (!st || st.mtimeMs > cutoff) continue;
      await rm(path, { force: true });
      removed++;
    }
    return removed;
  }

  async getStream(key: string): Promise<Readable> {
    const path = this.pathOf(key);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      throw this.readError(key, error);
    }
    try {
      if (!(await handle.stat()).isFile()) throw this.notFound(key);
    } catch (error) {
      await handle.close().catch(() => {});
      throw error instanceof ObjectStoreError ? error : this.readError(key, error);
    }
    return handle.createReadStream();
  }

  async get(key: string): Promise<Buffer> {
    const path = this.pathOf(key);
    try {
      return await readFile(path);
    } catch (error) {
      throw this.readError(key, error);
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const path = this.pathOf(key);
    let st: Stats;
    try {
      st = await stat(path);
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw this.ioError(`cannot stat object '${key}'`, error);
    }
    return st.isFile() ? this.info(key, st) : null;
  }

  private info(key: string, st: Stats): ObjectInfo {
    // Every put creates a new inode, so (inode, mtime, size) changes on overwrite.
    const etag = `${st.ino.toString(16)}-${Math.round(st.mtimeMs * 1000).toString(16)}-${st.size.toString(16)}`;
    return { key, size: st.size, updated: st.mtime, etag };
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    validatePrefix(prefix);
    const cut = prefix.lastIndexOf('/') + 1;
    const dirKey = prefix.slice(0, cut); // '' or 'a/b/'
    const partial = prefix.slice(cut);
    const keys: string[] = [];
    const walk = async (dir: string, keyPrefix: string, namePrefix: string): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        const code = errnoCode(error);
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw this.ioError(`cannot list ${dir}`, error);
      }
      const subdirs: Promise<void>[] = [];
      for (const entry of entries) {
        const name = entry.name;
        // Staging files, and names no key can have.
        if (name.includes('\\') || !name.startsWith(namePrefix)) continue;
        if (entry.isDirectory()) subdirs.push(walk(join(dir, name), `${keyPrefix}${name}/`, ''));
        else if (entry.isFile()) keys.push(keyPrefix + name);
      }
      await Promise.all(subdirs);
    };
    await walk(
      dirKey === '' ? this.root : join(this.root, ...dirKey.slice(0, -1).split('/')),
      dirKey,
      partial,
    );
    const infos = await mapLimit(keys, 16, (key) => this.stat(key).catch(() => null));
    return infos
      .filter((info): info is ObjectInfo => info !== null)
      .sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (error) {
      const code = errnoCode(error);
      // Absent, or a directory (keys under it exist, but no object of this name).
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'EPERM') return;
      throw this.ioError(`cannot delete object '${key}'`, error);
    }
    // Prune directories left empty, up to (not including) the root; a concurrent put()
    // that loses its directory to this recreates it.
    let dir = dirname(path);
    while (dir.startsWith(this.root + sep)) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
      dir = dirname(dir);
    }
  }

  private notFound(key: string): ObjectStoreError {
    return new ObjectStoreError('not_found', `object '${key}' not found in ${this.url}`);
  }

  private conflict(key: string): ObjectStoreError {
    return new ObjectStoreError(
      'invalid_key',
      `object key '${key}' conflicts with an existing object in ${this.url}: a file:// store cannot hold both 'x' and 'x/...'`,
    );
  }

  private readError(key: string, error: unknown): ObjectStoreError {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return this.notFound(key);
    return this.ioError(`cannot read object '${key}'`, error);
  }

  private ioError(what: string, error: unknown): ObjectStoreError {
    return new ObjectStoreError('unavailable', `${what} (${this.url}): ${errorMessage(error)}`, {
      cause: error,
    });
  }
}

// DCP checkpoints in an object store: save (per-rank shard files, then the metadata file as
// the if-absent commit), load any rank's slice for any world size (resharding), list, delete,
// TTL expiry, retention of the last K and garbage collection of uncommitted leftovers.
//
// Layout under the manager's prefix:
//   {name}/metadata.json                                  commit point, written last
//   {name}/data-{attempt}/rank-{r:05}-of-{R:05}.safetensors  rank r's slice of every tensor
// A checkpoint without metadata.json is invisible; a writer killed mid-save leaves only
// data-{attempt}/ files, which sweep() deletes once they are older than the grace period.
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { FileObjectStore } from '../object-store/file.js';
import { IO_PIECE_BYTES, readFullySync, YieldBudget } from '../object-store/local-io.js';
import { type ObjectInfo, type ObjectStore, ObjectStoreError } from '../object-store/types.js';
import {
  ByteStreamReader,
  layoutSafetensors,
  type SafetensorsLayout,
  safetensorsReadable,
  type Tensor,
  type TensorSpec,
} from '../safetensors.js';
import {
  type ChecksumAlgorithm,
  checksumLike,
  crc32Combine,
  crc32Update,
  DEFAULT_CHECKSUM,
  formatCrc32,
  newChecksum,
} from './checksum.js';
import { CheckpointError, validateCheckpointName, validatePrefix } from './errors.js';
import {
  DCP_FORMAT,
  DCP_VERSION,
  type DcpChunk,
  type DcpFileEntry,
  type DcpMetadata,
  type JsonValue,
  METADATA_FILE,
  parseDcpMetadata,
} from './metadata.js';
import { type FlatRange, intersectRanges, partitionRange } from './partition.js';
import {
  type FilePiece,
  readWorkerLimit,
  sharedMemoryOf,
  startWorkerReads,
} from './read-workers.js';

export interface DcpCheckpointsOptions {
  /** Key prefix of every checkpoint ('' = the store root). */
  prefix?: string;
  /** After each save, delete committed checkpoints beyond the newest `keepLast`. */
  keepLast?: number;
  /** Uncommitted files younger than this are left alone by sweep() (a save may be running). */
  graceMs?: number;
  /** Files written or read at once. */
  concurrency?: number;
  /**
   * Worker threads a file:// load may use to read and checksum one large shard on several
   * cores (read-workers.ts); default one fewer than the cores, at most 3; 0 = none.
   */
  readWorkers?: number;
  /** Clock (tests). */
  now?: () => Date;
}

/**
 * A tensor to save: its values, or a function that reads them when the writer reaches the
 * tensor (so a save need not copy the whole state up front; the caller keeps the values
 * unchanged until save() resolves).
 */
export type WholeTensor = Tensor | { shape: number[]; read: () => Float32Array };
export type SaveTensor =
  | WholeTensor
  /**
   * Only a slice is at hand (a ZeRO-1 rank's shard of the optimizer state): the values of
   * the flat range asked for (the writer's ranges must lie in what the caller holds).
   */
  | { shape: number[]; readRange: (range: FlatRange) => Float32Array };

/**
 * Which flat range of a tensor a rank writes or reads; null = none of it. Every rank of a
 * save must pick ranges that together tile each tensor (commit checks they do).
 */
export type RangeOf = (key: string, numel: number) => FlatRange | null;

export interface DcpSaveInput {
  /** Tensors by key (e.g. `weights/model.norm.weight`), full (unsharded) values. */
  tensors: ReadonlyMap<string, SaveTensor>;
  step: number;
  /** Caller state stored verbatim: data cursor, RNG state, hyperparameters, model config. */
  state?: JsonValue;
  /** Recorded for catalogs: TRAINING, TRAINING_LORA, ... */
  checkpointType?: string;
  /** Number of shard files (data-parallel ranks); default 1. */
  worldSize?: number;
  /** The checkpoint expires (is hidden, then swept) this many seconds after it is written. */
  ttlSeconds?: number;
  /** File checksum: crc32 (default, fast) or sha256. */
  checksum?: ChecksumAlgorithm;
}

/** What one rank wrote: its file and the chunks inside it. */
export interface DcpShardResult {
  file: DcpFileEntry;
  chunks: { key: string; chunk: DcpChunk }[];
}

export interface DcpLoadOptions {
  rank?: number;
  worldSize?: number;
  /** Only these tensor keys. */
  select?: (key: string) => boolean;
  /**
   * The range of each tensor to read instead of rank's part of worldSize (a ZeRO-1 rank's
   * optimizer shard, whatever partition the checkpoint was written with); null skips it.
   */
  ranges?: RangeOf;
}

export interface DcpSlice {
  shape: number[];
  /** The flat index range this slice covers (the whole tensor when worldSize is 1). */
  range: FlatRange;
  data: Float32Array;
}

export interface DcpLoaded {
  metadata: DcpMetadata;
  tensors: Map<string, DcpSlice>;
}

export interface SweepOptions {
  keepLast?: number;
  graceMs?: number;
}

export interface SweepResult {
  /** Committed checkpoints removed (expired or beyond retention). */
  deleted: string[];
  /** Names whose uncommitted leftovers were removed. */
  collected: string[];
  objectsRemoved: number;
}

const DEFAULT_GRACE_MS = 60 * 60 * 1000;
function isCheckpointName(name: string): boolean {
  try {
    validateCheckpointName(name);
    return true;
  } catch {
    return false;
  }
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function shardFileName(attempt: string, rank: number, worldSize: number): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return `${attempt}/rank-${pad(rank)}-of-${pad(worldSize)}.safetensors`;
}

/** Runs `fn` over items with at most `limit` in flight; rejects with the first error. */
async function forEachLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  async function worker(): Promise<void> {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/**
 * A shard file's bytes for FileObjectStore.putPieces: the header, then each tensor's float32
 * values as views of the caller's memory (no copy), asking for a tensor only when the writer
 * reaches it.
 */
function* shardPieces(
  layout: SafetensorsLayout,
  values: (key: string) => Float32Array,
): Generator<Uint8Array> {
  yield layout.headerBytes;
  for (const e of layout.entries) {
    const data = values(e.name);
    yield new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
}

/** A file part is given to a read worker only when it is at least this large. */
const WORKER_PART_BYTES = 32 << 20;

/** Reads `pieces` from `fd` on this thread, handing each to `update` right after reading it. */
async function readPiecesHere(
  fd: number,
  pieces: readonly FilePiece[],
  update: (bytes: Uint8Array) => void,
): Promise<void> {
  const budget = new YieldBudget();
  let scratch: Uint8Array | null = null;
  for (const p of pieces) {
    if (!p.target && (!scratch || scratch.byteLength < p.len)) scratch = new Uint8Array(p.len);
    const bytes = p.target ?? scratch!.subarray(0, p.len);
    readFullySync(fd, bytes, p.at);
    update(bytes);
    await budget.spent(p.len);
  }
}

/**
 * A whole file as IO_PIECE_BYTES pieces in file order: the parts that `reads` want go straight
 * into their targets (target set), the gaps between them are read only to be checksummed.
 */
function* filePieces(
  reads: readonly { begin: number; target: Uint8Array }[],
  size: number,
): Generator<FilePiece> {
  function* split(at: number, len: number, target: Uint8Array | null) {
    for (let o = 0; o < len; o += IO_PIECE_BYTES) {
      const n = Math.min(IO_PIECE_BYTES, len - o);
      yield { at: at + o, len: n, target: target ? target.subarray(o, o + n) : null };
    }
  }
  let pos = 0;
  for (const r of reads) {
    if (r.begin > pos) yield* split(pos, r.begin - pos, null);
    yield* split(r.begin, r.target.byteLength, r.target);
    pos = r.begin + r.target.byteLength;
  }
  if (size > pos) yield* split(pos, size - pos, null);
}

/**
 * Float32Arrays for load() to fill, carved from one allocation: one large allocation instead
 * of one per tensor spares V8 a garbage collection every few tensors ("external memory
 * pressure"; ~15% of a load). The views keep the whole block alive as long as any of them is.
 * - `shared`: a SharedArrayBuffer, which read workers can fill too (zeroed, but a block this
 *   large is fresh pages from the OS, so the zeroing costs nothing up front);
 * - otherwise memory that is not zeroed first (zeroing is a whole extra pass; a plain readFile
 *   skips it too). Safe because parseDcpMetadata checks that a tensor's chunks tile it, so
 *   reads cover every element, and load() returns nothing when a read fails.
 */
function tensorBlock(lengths: readonly number[], shared: boolean): Float32Array[] {
  // 64-byte aligned starts: a tensor never shares a cache line with the one before it.
  const starts: number[] = [];
  let bytes = 0;
  for (const n of lengths) {
    starts.push(bytes);
    bytes += Math.ceil((n * 4) / 64) * 64;
  }
  const block = shared ? new SharedArrayBuffer(bytes) : Buffer.allocUnsafeSlow(bytes).buffer;
  return lengths.map((n, i) => new Float32Array(block, starts[i], n));
}

export class DcpCheckpoints {
  readonly store: ObjectStore;
  readonly prefix: string;
  private readonly opts: DcpCheckpointsOptions;

  constructor(store: ObjectStore, opts: DcpCheckpointsOptions = {}) {
    this.store = store;
    this.prefix = validatePrefix(opts.prefix ?? '');
    if (opts.keepLast !== undefined && !(Number.isInteger(opts.keepLast) && opts.keepLast >= 1))
      throw new CheckpointError(
        'invalid_argument',
        `keepLast must be a positive integer (got ${opts.keepLast})`,
      );
    this.opts = opts;
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  private get concurrency(): number {
    return this.opts.concurrency ?? 4;
  }

  private get readWorkers(): number {
    return Math.min(this.opts.readWorkers ?? readWorkerLimit(), readWorkerLimit());
  }

  /** Store key of a file of a checkpoint. */
  key(name: string, file: string): string {
    return this.prefix ? `${this.prefix}/${name}/${file}` : `${name}/${file}`;
  }

  private get listPrefix(): string {
    return this.prefix ? `${this.prefix}/` : '';
  }

  // ---------------------------------------------------------------------- save

  /** Writes every rank's shard, then commits the metadata. Applies retention when configured. */
  async save(name: string, input: DcpSaveInput): Promise<DcpMetadata> {
    validateCheckpointName(name);
    const worldSize = input.worldSize ?? 1;
    if (!Number.isInteger(worldSize) || worldSize < 1 || worldSize > 99_999)
      throw new CheckpointError(
        'invalid_argument',
        `worldSize must be an integer in [1, 99999] (got ${worldSize})`,
      );
    if (!Number.isInteger(input.step) || input.step < 0)
      throw new CheckpointError(
        'invalid_argument',
        `step must be a non-negative integer (got ${input.step})`,
      );
    if (input.ttlSeconds !== undefined && !(input.ttlSeconds > 0))
      throw new CheckpointError(
        'invalid_argument',
        `ttlSeconds must be positive (got ${input.ttlSeconds})`,
      );
    for (const [key, t] of input.tensors)
      if ('data' in t && t.data.length !== numel(t.shape))
        throw new CheckpointError(
          'invalid_argument',
          `tensor '${key}' has ${t.data.length} values for shape [${t.shape}]`,
        );
    if (await this.store.stat(this.key(name, METADATA_FILE)))
      throw new CheckpointError(
        'already_exists',
        `checkpoint '${name}' already exists; save under a new name or delete it first`,
      );
    const attempt = this.beginSave();
    const shards = await forEachLimited(
      Array.from({ length: worldSize }, (_, r) => r),
      this.concurrency,
      (rank) => this.writeShard(name, attempt, rank, worldSize, input.tensors, input.checksum),
    );
    const meta = await this.commit(name, input, shards);
    if (this.opts.keepLast !== undefined) await this.sweep({ keepLast: this.opts.keepLast });
    return meta;
  }

  /** A fresh attempt id: the directory every rank of one save writes into. */
  beginSave(): string {
    return `data-${randomBytes(6).toString('hex')}`;
  }

  /**
   * Writes rank `rank`'s slice of every tensor (the same partition load uses) as one
   * safetensors file, hashing it on the way. Ranks of a multi-process job each call this with
   * the same attempt id; one of them then calls commit() with every rank's result.
   */
  async writeShard(
    name: string,
    attempt: string,
    rank: number,
    worldSize: number,
    tensors: ReadonlyMap<string, SaveTensor>,
    checksum: ChecksumAlgorithm = DEFAULT_CHECKSUM,
    rangeOf: RangeOf = (_key, n) => partitionRange(n, rank, worldSize),
  ): Promise<DcpShardResult> {
    validateCheckpointName(name);
    if (!/^data-[a-z0-9]{4,32}$/.test(attempt))
      throw new CheckpointError(
        'invalid_name',
        `attempt id '${attempt}' must be data-[a-z0-9]{4,32}`,
      );
    const path = shardFileName(attempt, rank, worldSize);
    const specs: TensorSpec[] = [];
    const ranges = new Map<string, FlatRange>();
    for (const key of [...tensors.keys()].sort()) {
      const n = numel(tensors.get(key)!.shape);
      const range = rangeOf(key, n);
      if (!range || range.end === range.start) continue;
      if (range.start < 0 || range.end > n || range.start > range.end)
        throw new CheckpointError(
          'invalid_argument',
          `range [${range.start}, ${range.end}) of tensor '${key}' is outside its ${n} values`,
        );
      specs.push({ name: key, shape: [range.end - range.start] });
      ranges.set(key, range);
    }
    const slice = (key: string): Float32Array => {
      const t = tensors.get(key)!;
      const r = ranges.get(key)!;
      if ('readRange' in t) {
        const part = t.readRange(r);
        if (part.length !== r.end - r.start)
          throw new CheckpointError(
            'invalid_argument',
            `tensor '${key}' gave ${part.length} values for range [${r.start}, ${r.end})`,
          );
        return part;
      }
      const data = 'data' in t ? t.data : t.read();
      if (data.length !== numel(t.shape))
        throw new CheckpointError(
          'invalid_argument',
          `tensor '${key}' has ${data.length} values for shape [${t.shape}]`,
        );
      return data.subarray(r.start, r.end);
    };
    const hash = newChecksum(checksum);
    const metadata = {
      format: DCP_FORMAT,
      checkpoint: name,
      rank: String(rank),
      world_size: String(worldSize),
    };
    const key = this.key(name, path);
    const contentType = 'application/octet-stream';
    let layout: SafetensorsLayout;
    if (this.store instanceof FileObjectStore) {
      layout = layoutSafetensors(specs, { metadata });
      // Checksummed right after each piece is written, while its bytes are still cached.
      await this.store.putPieces(key, shardPieces(layout, slice), {
        contentType,
        onWritten: (piece) => hash.update(piece),
      });
    } else {
      const readable = safetensorsReadable(specs, slice, {
        metadata,
        onBytes: (b) => hash.update(b),
      });
      layout = readable.layout;
      await this.store.put(key, readable.stream, { contentType });
    }
    const chunks = layout.entries.map((e) => {
      const s = { range: ranges.get(e.name)! };
      return {
        key: e.name,
        chunk: {
          file: path,
          rank,
          byteRange: [layout.dataStart + e.begin, layout.dataStart + e.end] as [number, number],
          flatRange: [s.range.start, s.range.end] as [number, number],
        },
      };
    });
    return { file: { path, rank, size: layout.size, checksum: hash.digest() }, chunks };
  }

  /**
   * The commit point: checks every shard is in the store with its size, then writes the
   * metadata with an if-absent put. Losing the race to another writer of the same name
   * deletes this attempt's files and fails with 'already_exists'.
   */
  async commit(name: string, input: DcpSaveInput, shards: DcpShardResult[]): Promise<DcpMetadata> {
    validateCheckpointName(name);
    const worldSize = input.worldSize ?? 1;
    const ranks = new Set(shards.map((s) => s.file.rank));
    if (shards.length !== worldSize || ranks.size !== worldSize)
      throw new CheckpointError(
        'invalid_argument',
        `commit of '${name}' needs one shard per rank 0..${worldSize - 1} (got ranks ${[...ranks].sort((a, b) => a - b).join(', ')})`,
      );
    for (const s of shards) {
      const info = await this.store.stat(this.key(name, s.file.path));
      if (!info || info.size !== s.file.size)
        throw new CheckpointError(
          'corrupt',
          `checkpoint '${name}': shard ${s.file.path} is ${info ? `${info.size} bytes, expected ${s.file.size}` : 'missing'} before commit; save again`,
          { file: s.file.path },
        );
    }
    const tensors: DcpMetadata['tensors'] = {};
    for (const [key, t] of input.tensors)
      tensors[key] = { shape: t.shape, dtype: 'F32', chunks: [] };
    for (const s of shards)
      for (const { key, chunk } of s.chunks) {
        const entry = tensors[key];
        if (!entry)
          throw new CheckpointError(
            'invalid_argument',
            `shard ${s.file.path} holds unknown tensor '${key}'`,
          );
        entry.chunks.push(chunk);
      }
    for (const t of Object.values(tensors))
      t.chunks.sort((a, b) => a.flatRange[0] - b.flatRange[0]);
    const now = this.now();
    const meta: DcpMetadata = {
      format: DCP_FORMAT,
      version: DCP_VERSION,
      name,
      checkpointType: input.checkpointType ?? 'TRAINING',
      createTime: now.toISOString(),
      expireTime:
        input.ttlSeconds !== undefined
          ? new Date(now.getTime() + input.ttlSeconds * 1000).toISOString()
          : null,
      step: input.step,
      worldSize,
      partition: 'contiguous-flat',
      files: shards.map((s) => s.file).sort((a, b) => a.rank - b.rank),
      tensors,
      state: input.state ?? null,
    };
    const text = `${JSON.stringify(meta)}\n`;
    parseDcpMetadata(text, `checkpoint '${name}' metadata`); // what we commit must load
    try {
      await this.store.put(this.key(name, METADATA_FILE), text, {
        ifAbsent: true,
        contentType: 'application/json',
      });
    } catch (err) {
      if (err instanceof ObjectStoreError && err.code === 'already_exists') {
        await Promise.all(shards.map((s) => this.store.delete(this.key(name, s.file.path))));
        throw new CheckpointError(
          'already_exists',
          `checkpoint '${name}' was committed by another writer first`,
        );
      }
      throw err;
    }
    return meta;
  }

  // ---------------------------------------------------------------------- read

  private isExpired(meta: DcpMetadata, now = this.now()): boolean {
    return meta.expireTime !== null && Date.parse(meta.expireTime) <= now.getTime();
  }

  private async readMetadata(name: string): Promise<DcpMetadata | null> {
    let body: Buffer;
    try {
      body = await this.store.get(this.key(name, METADATA_FILE));
    } catch (err) {
      if (err instanceof ObjectStoreError && err.code === 'not_found') return null;
      throw err;
    }
    const meta = parseDcpMetadata(body.toString('utf8'), `checkpoint '${name}' ${METADATA_FILE}`);
    if (meta.name !== name)
      throw new CheckpointError(
        'corrupt',
        `checkpoint '${name}': ${METADATA_FILE} names '${meta.name}'`,
        { file: METADATA_FILE },
      );
    return meta;
  }

  /** The committed, unexpired checkpoint's metadata. */
  async metadata(name: string): Promise<DcpMetadata> {
    validateCheckpointName(name);
    const meta = await this.readMetadata(name);
    if (!meta)
      throw new CheckpointError(
        'not_found',
        `no committed checkpoint named '${name}' under ${this.store.url}${this.prefix ? `/${this.prefix}` : ''}`,
      );
    if (this.isExpired(meta))
      throw new CheckpointError('not_found', `checkpoint '${name}' expired at ${meta.expireTime}`);
    return meta;
  }

  /** Groups the store's objects by checkpoint name. */
  private async objectsByName(): Promise<Map<string, ObjectInfo[]>> {
    const out = new Map<string, ObjectInfo[]>();
    for (const o of await this.store.list(this.listPrefix)) {
      const rest = o.key.slice(this.listPrefix.length);
      const slash = rest.indexOf('/');
      if (slash <= 0) continue;
      const name = rest.slice(0, slash);
      const list = out.get(name);
      if (list) list.push(o);
      else out.set(name, [o]);
    }
    return out;
  }

  private async committed(includeExpired: boolean): Promise<DcpMetadata[]> {
    const metas: DcpMetadata[] = [];
    const now = this.now();
    for (const [name, objects] of await this.objectsByName()) {
      if (!objects.some((o) => o.key === this.key(name, METADATA_FILE))) continue;
      let meta: DcpMetadata | null;
      try {
        validateCheckpointName(name);
        meta = await this.readMetadata(name);
      } catch {
        continue; // unreadable metadata: not listed, not swept
      }
      if (meta && (includeExpired || !this.isExpired(meta, now))) metas.push(meta);
    }
    return metas.sort(
      (a, b) =>
        Date.parse(a.createTime) - Date.parse(b.createTime) ||
        a.step - b.step ||
        (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    );
  }

  /** Committed, unexpired checkpoints, oldest first. */
  list(): Promise<DcpMetadata[]> {
    return this.committed(false);
  }

  /** The newest committed, unexpired checkpoint, or null. */
  async latest(): Promise<DcpMetadata | null> {
    const all = await this.list();
    return all[all.length - 1] ?? null;
  }

  /**
   * Rank `rank` of `worldSize`'s slice of every tensor (the partition save used, applied to
   * the new world size). Every file read is checked against its size and checksum before
   * anything is returned.
   */
  async load(name: string, opts: DcpLoadOptions = {}): Promise<DcpLoaded> {
    const rank = opts.rank ?? 0;
    const worldSize = opts.worldSize ?? 1;
    if (
      !Number.isInteger(worldSize) ||
      worldSize < 1 ||
      !Number.isInteger(rank) ||
      rank < 0 ||
      rank >= worldSize
    )
      throw new CheckpointError(
        'invalid_argument',
        `rank ${rank} of world size ${worldSize} is out of range`,
      );
    const meta = await this.metadata(name);
    const files = new Map(meta.files.map((f) => [f.path, f]));
    const tensors = new Map<string, DcpSlice>();
    type Read = { begin: number; target: Uint8Array };
    const reads = new Map<string, Read[]>();
    const rangeOf: RangeOf = opts.ranges ?? ((_key, n) => partitionRange(n, rank, worldSize));
    const wanted = Object.entries(meta.tensors)
      .filter(([key]) => !opts.select || opts.select(key))
      .flatMap(([key, t]) => {
        const want = rangeOf(key, numel(t.shape));
        return want ? [{ key, t, want }] : [];
      });
    const lengths = wanted.map(({ want }) => want.end - want.start);
    // Shared memory when read workers may help: a local store and enough bytes for two parts.
    const shared =
      this.store instanceof FileObjectStore &&
      this.readWorkers > 0 &&
      lengths.reduce((a, n) => a + n * 4, 0) >= 2 * WORKER_PART_BYTES;
    const blocks = tensorBlock(lengths, shared);
    for (const [i, { key, t, want }] of wanted.entries()) {
      const data = blocks[i]!;
      tensors.set(key, { shape: t.shape, range: want, data });
      for (const c of t.chunks) {
        const overlap = intersectRanges({ start: c.flatRange[0], end: c.flatRange[1] }, want);
        if (!overlap) continue;
        const list = reads.get(c.file) ?? [];
        reads.set(c.file, list);
        list.push({
          begin: c.byteRange[0] + (overlap.start - c.flatRange[0]) * 4,
          target: new Uint8Array(
            data.buffer,
            data.byteOffset + (overlap.start - want.start) * 4,
            (overlap.end - overlap.start) * 4,
          ),
        });
      }
    }
    await forEachLimited([...reads.keys()].sort(), this.concurrency, (path) =>
      this.readFile(
        name,
        files.get(path)!,
        reads.get(path)!.sort((a, b) => a.begin - b.begin),
      ),
    );
    return { metadata: meta, tensors };
  }

  /** Streams one shard front to back into the targets, then checks its size and checksum. */
  private async readFile(
    name: string,
    file: DcpFileEntry,
    reads: { begin: number; target: Uint8Array }[],
  ): Promise<void> {
    const where = `checkpoint '${name}' file ${file.path}`;
    if (this.store instanceof FileObjectStore) {
      const path = join(this.store.root, ...this.key(name, file.path).split('/'));
      return this.readLocalFile(path, where, file, reads);
    }
    const hash = checksumLike(file.checksum);
    let stream: AsyncIterable<unknown>;
    try {
      stream = await this.store.getStream(this.key(name, file.path));
    } catch (err) {
      if (err instanceof ObjectStoreError && err.code === 'not_found')
        throw new CheckpointError('corrupt', `${where} is missing`, {
          file: file.path,
          cause: err,
        });
      throw err;
    }
    const bytes = new ByteStreamReader(stream, where, (b) => hash.update(b));
    let size: number;
    try {
      for (const r of reads) {
        await bytes.skip(r.begin - bytes.position);
        await bytes.readInto(r.target);
      }
      size = bytes.position + (await bytes.drain());
    } catch (err) {
      await bytes.close();
      if (err instanceof CheckpointError) throw err;
      throw new CheckpointError(
        'corrupt',
        `${where} is truncated or unreadable (expected ${file.size} bytes): ${(err as Error).message}`,
        { file: file.path, cause: err },
      );
    }
    this.checkFile(where, file, size, hash.digest());
  }

  private checkFile(where: string, file: DcpFileEntry, size: number, digest: string): void {
    if (size !== file.size)
      throw new CheckpointError(
        'corrupt',
        `${where} has ${size} bytes, expected ${file.size} (truncated or overwritten)`,
        { file: file.path },
      );
    if (digest !== file.checksum)
      throw new CheckpointError(
        'corrupt',
        `${where} fails its checksum (${digest}, expected ${file.checksum})`,
        { file: file.path },
      );
  }

  /**
   * The file:// fast path: synchronous positioned reads of IO_PIECE_BYTES straight into the
   * targets (gaps into a scratch buffer), each piece checksummed right after it is read, while
   * it is still in the CPU cache (see object-store/local-io.ts). A large crc32 file whose
   * targets are shared memory is split with read workers (read-workers.ts) across cores.
   */
  private async readLocalFile(
    path: string,
    where: string,
    file: DcpFileEntry,
    reads: { begin: number; target: Uint8Array }[],
  ): Promise<void> {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw new CheckpointError('corrupt', `${where} is missing`, { file: file.path, cause: err });
    }
    const running: Promise<number>[] = [];
    try {
      const size = (await fh.stat()).size;
      if (size !== file.size) return this.checkFile(where, file, size, '');
      const pieces = [...filePieces(reads, size)];
      const memory = file.checksum.startsWith('crc32:') ? sharedMemoryOf(pieces) : null;
      if (!memory) {
        const hash = checksumLike(file.checksum);
        await readPiecesHere(fh.fd, pieces, (bytes) => hash.update(bytes));
        return this.checkFile(where, file, size, hash.digest());
      }
      const { own, parts } = startWorkerReads(fh.fd, memory, pieces, {
        maxWorkers: this.readWorkers,
        minPartBytes: WORKER_PART_BYTES,
      });
      running.push(...parts.map((p) => p.crc));
      let value = 0;
      await readPiecesHere(fh.fd, own, (bytes) => {
        value = crc32Update(bytes, value);
      });
      for (const part of parts) value = crc32Combine(value, await part.crc, part.bytes);
      this.checkFile(where, file, size, formatCrc32(value));
    } catch (err) {
      if (err instanceof CheckpointError) throw err;
      throw new CheckpointError('corrupt', `${where} is unreadable: ${(err as Error).message}`, {
        file: file.path,
        cause: err,
      });
    } finally {
      await Promise.allSettled(running); // no worker may still read the descriptor we close
      await fh.close();
    }
  }

  // ---------------------------------------------------------------------- delete, sweep

  /** Deletes a checkpoint: the metadata first (it vanishes at once), then its files. */
  async delete(name: string): Promise<void> {
    validateCheckpointName(name);
    await this.store.delete(this.key(name, METADATA_FILE));
    const objects = await this.store.list(this.key(name, ''));
    await forEachLimited(objects, this.concurrency, (o) => this.store.delete(o.key));
  }

  /**
   * Deletes expired checkpoints, checkpoints beyond the newest `keepLast`, and uncommitted
   * leftovers (partial saves) whose newest file is older than the grace period.
   */
  async sweep(opts: SweepOptions = {}): Promise<SweepResult> {
    const now = this.now();
    const grace = opts.graceMs ?? this.opts.graceMs ?? DEFAULT_GRACE_MS;
    const keepLast = opts.keepLast ?? this.opts.keepLast;
    const result: SweepResult = { deleted: [], collected: [], objectsRemoved: 0 };
    const all = await this.committed(true);
    const live = all.filter((m) => !this.isExpired(m, now));
    const doomed = new Set(all.filter((m) => this.isExpired(m, now)).map((m) => m.name));
    if (keepLast !== undefined && live.length > keepLast)
      for (const m of live.slice(0, live.length - keepLast)) doomed.add(m.name);
    for (const name of doomed) {
      await this.delete(name);
      result.deleted.push(name);
    }
    const referenced = new Map(
      all.map((m) => [m.name, new Set(m.files.map((f) => this.key(m.name, f.path)))]),
    );
    for (const [name, objects] of await this.objectsByName()) {
      if (doomed.has(name) || !isCheckpointName(name)) continue;
      const metaKey = this.key(name, METADATA_FILE);
      const refs = referenced.get(name);
      const committed = objects.some((o) => o.key === metaKey);
      if (committed && !refs) continue; // metadata we cannot read: leave it for a person
      const stale = (o: ObjectInfo) => now.getTime() - o.updated.getTime() >= grace;
      let garbage: ObjectInfo[];
      if (refs) garbage = objects.filter((o) => o.key !== metaKey && !refs.has(o.key) && stale(o));
      else garbage = objects.every(stale) ? objects : []; // a save may still be running
      if (garbage.length === 0) continue;
      await forEachLimited(garbage, this.concurrency, (o) => this.store.delete(o.key));
      result.collected.push(name);
      result.objectsRemoved += garbage.length;
    }
    return result;
  }
}

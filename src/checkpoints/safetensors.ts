// The safetensors format: 8-byte little-endian header length, a JSON header mapping tensor
// names to {dtype, shape, data_offsets} (plus optional string `__metadata__`), then the raw
// little-endian tensor bytes. Reading converts every float dtype to float32.
//
// Three ways in and out:
// - whole buffers (parseSafetensors / serializeSafetensors), for small files and tests;
// - streaming: a reader that takes the header and then one tensor at a time, either by byte
//   range from a local file (SafetensorsFileReader) or front to back from any stream, such as
//   an object-store download (openSafetensorsStream), and a writer that produces the header
//   and then each tensor in turn as a Readable (safetensorsReadable), asking for a tensor's
//   data only when it is its turn;
// - sharding under a size limit with `model.safetensors.index.json`
//   (`{metadata: {total_size}, weight_map: {tensor: file}}`), HuggingFace's layout.
import { createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import {
  bf16ToF32,
  DTYPE_BYTES,
  f16ToF32,
  f32ToBf16,
  type StorageDtype,
  type TensorData,
} from '../engine/dtype.js';

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

export type TensorMap = Map<string, Tensor>;

/** The dtypes we write: float32 (exact) or bfloat16 (round-to-nearest-even). */
export type WriteDtype = 'F32' | 'BF16';

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

/** Headers larger than this are refused (HuggingFace's limit is the same). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export class SafetensorsError extends Error {
  constructor(source: string, message: string) {
    super(`${source}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

export interface ParsedSafetensors {
  tensors: TensorMap;
  metadata: Record<string, string>;
}

/** One tensor's header entry; begin/end are byte offsets relative to the data section. */
export interface SafetensorsEntry {
  name: string;
  dtype: StorageDtype;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  /** Sorted by byte offset (the order a front-to-back reader meets them). */
  entries: SafetensorsEntry[];
  /** Absolute file offset of the data section (8 + header length). */
  dataStart: number;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Validates a header's JSON. With `dataSize` (bytes after the header) every tensor must lie
 * inside the file; entries may not overlap.
 */
export function parseSafetensorsHeader(
  json: Uint8Array,
  source: string,
  dataSize?: number,
): SafetensorsHeader {
  let header: unknown;
  try {
    header = JSON.parse(
      Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8'),
    );
  } catch (err) {
    throw new SafetensorsError(source, `header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    throw new SafetensorsError(source, 'header is not a JSON object');
  const entries: SafetensorsEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      const parsed = z.record(z.string(), z.string()).safeParse(raw);
      if (!parsed.success)
        throw new SafetensorsError(source, '__metadata__ must map strings to strings');
      metadata = parsed.data;
      continue;
    }
    const parsed = entrySchema.safeParse(raw);
    if (!parsed.success)
      throw new SafetensorsError(source, `tensor '${name}' has a malformed header entry`);
    const {
      dtype,
      shape,
      data_offsets: [begin, end],
    } = parsed.data;
    if (!(dtype in DTYPE_BYTES))
      throw new SafetensorsError(source, `tensor '${name}' has unsupported dtype ${dtype}`);
    const width = DTYPE_BYTES[dtype as StorageDtype];
    if (end - begin !== numel(shape) * width || (dataSize !== undefined && end > dataSize))
      throw new SafetensorsError(
        source,
        `tensor '${name}' byte range [${begin}, ${end}) does not match shape ${JSON.stringify(shape)} ${dtype}${dataSize !== undefined && end > dataSize ? ` (the data section has ${dataSize} bytes)` : ''}`,
      );
    entries.push({ name, dtype: dtype as StorageDtype, shape, begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < entries.length; i++) {
    const prev = entries[i - 1]!;
    const cur = entries[i]!;
    if (cur.begin < prev.end && cur.end > cur.begin)
      throw new SafetensorsError(
        source,
        `tensors '${prev.name}' and '${cur.name}' overlap ([${prev.begin}, ${prev.end}) and [${cur.begin}, ${cur.end}))`,
      );
  }
  return { metadata, entries, dataStart: 8 + json.byteLength };
}

function readHeaderLength(prefix: Uint8Array, source: string, fileSize?: number): number {
  if (prefix.byteLength < 8)
    throw new SafetensorsError(source, 'file is shorter than the 8-byte header length');
  const len = Buffer.from(prefix.buffer, prefix.byteOffset, 8).readBigUInt64LE(0);
  if (len > BigInt(MAX_HEADER_BYTES))
    throw new SafetensorsError(
      source,
      `header length ${len} is over the ${MAX_HEADER_BYTES}-byte limit`,
    );
  const n = Number(len);
  if (fileSize !== undefined && n > fileSize - 8)
    throw new SafetensorsError(source, `header length ${n} exceeds the file size`);
  return n;
}

/** Decodes bytes whose start is 8-byte aligned (a fresh ArrayBuffer) without copying F32. */
function decodeAligned(bytes: Uint8Array, dtype: StorageDtype, count: number): Float32Array {
  const { buffer, byteOffset } = bytes;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buffer, byteOffset, count);
    case 'F64':
      return Float32Array.from(new Float64Array(buffer, byteOffset, count));
    case 'BF16':
      return bf16ToF32(new Uint16Array(buffer, byteOffset, count));
    case 'F16':
      return f16ToF32(new Uint16Array(buffer, byteOffset, count));
  }
}

function decode(bytes: Uint8Array, dtype: StorageDtype, count: number): Float32Array {
  // Copy into an aligned buffer: typed-array views need element alignment.
  return decodeAligned(new Uint8Array(bytes), dtype, count);
}

/** Parses a safetensors buffer; float dtypes become float32, anything else is an error. */
export function parseSafetensors(buf: Buffer, source = 'safetensors'): ParsedSafetensors {
  const headerLen = readHeaderLength(buf, source, buf.length);
  const header = parseSafetensorsHeader(
    buf.subarray(8, 8 + headerLen),
    source,
    buf.length - 8 - headerLen,
  );
  const tensors: TensorMap = new Map();
  for (const e of header.entries) {
    const bytes = buf.subarray(header.dataStart + e.begin, header.dataStart + e.end);
    tensors.set(e.name, { shape: e.shape, data: decode(bytes, e.dtype, numel(e.shape)) });
  }
  return { tensors, metadata: header.metadata };
}

/** Reads float64 tensors without narrowing (reference vectors are stored in float64). */
export function parseSafetensorsF64(
  buf: Buffer,
  source = 'safetensors',
): Map<string, { shape: number[]; data: Float64Array }> {
  const headerLen = readHeaderLength(buf, source, buf.length);
  const header = parseSafetensorsHeader(
    buf.subarray(8, 8 + headerLen),
    source,
    buf.length - 8 - headerLen,
  );
  const out = new Map<string, { shape: number[]; data: Float64Array }>();
  for (const e of header.entries) {
    if (e.dtype !== 'F64')
      throw new SafetensorsError(source, `tensor '${e.name}' is ${e.dtype}, expected F64`);
    const bytes = new Uint8Array(buf.subarray(header.dataStart + e.begin, header.dataStart + e.end))
      .buffer;
    out.set(e.name, { shape: e.shape, data: new Float64Array(bytes) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Streaming reads
// ---------------------------------------------------------------------------------------

/**
 * Reads a byte stream front to back in exact amounts without holding more than one incoming
 * chunk: `readInto` copies straight into the caller's memory, `skip` discards. `onBytes` sees
 * every byte consumed, in order (for checksums).
 */
export class ByteStreamReader {
  private readonly it: AsyncIterator<unknown>;
  private pending: Buffer | null = null;
  private done = false;
  /** Bytes consumed so far. */
  position = 0;

  constructor(
    stream: AsyncIterable<unknown>,
    readonly source: string,
    private readonly onBytes?: (chunk: Buffer) => void,
  ) {
    this.it = stream[Symbol.asyncIterator]();
  }

  private async nextChunk(): Promise<Buffer | null> {
    if (this.pending) {
      const p = this.pending;
      this.pending = null;
      return p;
    }
    while (!this.done) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return null;
      }
      const v = r.value;
      const buf =
        typeof v === 'string'
          ? Buffer.from(v)
          : Buffer.isBuffer(v)
            ? v
            : Buffer.from(
                (v as Uint8Array).buffer,
                (v as Uint8Array).byteOffset,
                (v as Uint8Array).byteLength,
              );
      if (buf.length > 0) return buf;
    }
    return null;
  }

  private consume(chunk: Buffer, n: number): Buffer {
    const used = chunk.subarray(0, n);
    if (n < chunk.length) this.pending = chunk.subarray(n);
    this.position += n;
    this.onBytes?.(used);
    return used;
  }

  private truncated(wanted: number, got: number): SafetensorsError {
    return new SafetensorsError(
      this.source,
      `truncated: the stream ended at byte ${this.position} with ${wanted - got} of ${wanted} expected bytes missing`,
    );
  }

  /** Fills `target` completely from the stream. */
  async readInto(target: Uint8Array): Promise<void> {
    let filled = 0;
    while (filled < target.byteLength) {
      const chunk = await this.nextChunk();
      if (!chunk) throw this.truncated(target.byteLength, filled);
      const used = this.consume(chunk, Math.min(chunk.length, target.byteLength - filled));
      target.set(used, filled);
      filled += used.length;
    }
  }

  async read(n: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(n);
    await this.readInto(out);
    return out;
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const chunk = await this.nextChunk();
      if (!chunk) throw this.truncated(n, n - left);
      left -= this.consume(chunk, Math.min(chunk.length, left)).length;
    }
  }

  /** Consumes the rest of the stream; returns how many bytes that was. */
  async drain(): Promise<number> {
    let n = 0;
    for (let chunk = await this.nextChunk(); chunk; chunk = await this.nextChunk())
      n += this.consume(chunk, chunk.length).length;
    return n;
  }

  /** Stops reading early (destroys the underlying stream). */
  async close(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.it.return?.();
    }
  }
}

/** A safetensors file read front to back from a stream: header first, then tensors in offset order. */
export class SafetensorsStreamReader {
  private constructor(
    readonly header: SafetensorsHeader,
    private readonly bytes: ByteStreamReader,
    readonly source: string,
  ) {}

  static async open(
    stream: AsyncIterable<unknown>,
    source = 'safetensors',
    opts: { onBytes?: (chunk: Buffer) => void } = {},
  ): Promise<SafetensorsStreamReader> {
    const bytes = new ByteStreamReader(stream, source, opts.onBytes);
    let prefix: Buffer;
    try {
      prefix = await bytes.read(8);
    } catch (err) {
      if (err instanceof SafetensorsError && bytes.position < 8)
        throw new SafetensorsError(source, 'file is shorter than the 8-byte header length');
      throw err;
    }
    const headerLen = readHeaderLength(prefix, source);
    const header = parseSafetensorsHeader(await bytes.read(headerLen), source);
    return new SafetensorsStreamReader(header, bytes, source);
  }

  /** Raw bytes of each selected tensor, in file order (unselected ones are skipped, not kept). */
  async *raw(
    select: (name: string) => boolean = () => true,
  ): AsyncGenerator<{ entry: SafetensorsEntry; bytes: Uint8Array }> {
    try {
      for (const entry of this.header.entries) {
        const at = this.header.dataStart + entry.begin;
        if (at < this.bytes.position)
          throw new SafetensorsError(this.source, `tensor '${entry.name}' overlaps the header`);
        if (!select(entry.name)) continue;
        await this.bytes.skip(at - this.bytes.position);
        const bytes = new Uint8Array(entry.end - entry.begin);
        await this.bytes.readInto(bytes);
        yield { entry, bytes };
      }
    } finally {
      await this.bytes.close();
    }
  }

  /** Each selected tensor as float32, in file order. */
  async *tensors(select?: (name: string) => boolean): AsyncGenerator<[string, Tensor]> {
    for await (const { entry, bytes } of this.raw(select))
      yield [
        entry.name,
        { shape: entry.shape, data: decodeAligned(bytes, entry.dtype, numel(entry.shape)) },
      ];
  }

  async readAll(select?: (name: string) => boolean): Promise<ParsedSafetensors> {
    const tensors: TensorMap = new Map();
    for await (const [name, t] of this.tensors(select)) tensors.set(name, t);
    return { tensors, metadata: this.header.metadata };
  }
}

/** Opens a stream (an object-store download, a file stream) for front-to-back reading. */
export function openSafetensorsStream(
  stream: AsyncIterable<unknown>,
  source = 'safetensors',
  opts: { onBytes?: (chunk: Buffer) => void } = {},
): Promise<SafetensorsStreamReader> {
  return SafetensorsStreamReader.open(stream, source, opts);
}

type FileHandle = Awaited<ReturnType<typeof open>>;

async function readFully(fh: FileHandle, target: Uint8Array, position: number, source: string) {
  let filled = 0;
  while (filled < target.byteLength) {
    const { bytesRead } = await fh.read(
      target,
      filled,
      target.byteLength - filled,
      position + filled,
    );
    if (bytesRead === 0)
      throw new SafetensorsError(
        source,
        `truncated: wanted ${target.byteLength} bytes at offset ${position}, the file ends after ${filled}`,
      );
    filled += bytesRead;
  }
}

/** Random access to a local safetensors file: the header, then any tensor by its byte range. */
export class SafetensorsFileReader {
  private constructor(
    readonly path: string,
    readonly header: SafetensorsHeader,
    private readonly fh: FileHandle,
  ) {}

  static async open(path: string): Promise<SafetensorsFileReader> {
    const fh = await open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      const prefix = new Uint8Array(Math.min(8, size));
      await readFully(fh, prefix, 0, path);
      const headerLen = readHeaderLength(prefix, path, size);
      const json = new Uint8Array(headerLen);
      await readFully(fh, json, 8, path);
      return new SafetensorsFileReader(
        path,
        parseSafetensorsHeader(json, path, size - 8 - headerLen),
        fh,
      );
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  names(): string[] {
    return this.header.entries.map((e) => e.name);
  }

  entry(name: string): SafetensorsEntry {
    const e = this.header.entries.find((x) => x.name === name);
    if (!e) throw new SafetensorsError(this.path, `no tensor named '${name}'`);
    return e;
  }

  async readRaw(name: string): Promise<Uint8Array> {
    const e = this.entry(name);
    const bytes = new Uint8Array(e.end - e.begin);
    await readFully(this.fh, bytes, this.header.dataStart + e.begin, this.path);
    return bytes;
  }

  async readTensor(name: string): Promise<Tensor> {
    const e = this.entry(name);
    return {
      shape: e.shape,
      data: decodeAligned(await this.readRaw(name), e.dtype, numel(e.shape)),
    };
  }

  async *tensors(select: (name: string) => boolean = () => true): AsyncGenerator<[string, Tensor]> {
    for (const e of this.header.entries)
      if (select(e.name)) yield [e.name, await this.readTensor(e.name)];
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

export async function readSafetensors(path: string): Promise<ParsedSafetensors> {
  const reader = await SafetensorsFileReader.open(path);
  try {
    const tensors: TensorMap = new Map();
    for await (const [name, t] of reader.tensors()) tensors.set(name, t);
    return { tensors, metadata: reader.header.metadata };
  } finally {
    await reader.close();
  }
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

export interface TensorSpec {
  name: string;
  shape: number[];
}

export interface SafetensorsLayout {
  /** The 8-byte length and the JSON header, padded so the data starts 8-byte aligned. */
  headerBytes: Buffer;
  /** In write order; begin/end relative to the data section. */
  entries: SafetensorsEntry[];
  dataStart: number;
  /** Total file size. */
  size: number;
}

export interface WriteOptions {
  dtype?: WriteDtype;
  metadata?: Record<string, string>;
}

/** Where each tensor goes, in the order given, and the header that says so. */
export function layoutSafetensors(
  specs: readonly TensorSpec[],
  opts: WriteOptions = {},
): SafetensorsLayout {
  const dtype = opts.dtype ?? 'F32';
  const width = DTYPE_BYTES[dtype];
  const header: Record<string, unknown> = {};
  if (opts.metadata) header.__metadata__ = opts.metadata;
  const entries: SafetensorsEntry[] = [];
  let offset = 0;
  for (const s of specs) {
    if (s.name === '__metadata__' || s.name in header)
      throw new SafetensorsError(
        'safetensors writer',
        `duplicate or reserved tensor name '${s.name}'`,
      );
    const bytes = numel(s.shape) * width;
    header[s.name] = { dtype, shape: s.shape, data_offsets: [offset, offset + bytes] };
    entries.push({ name: s.name, dtype, shape: s.shape, begin: offset, end: offset + bytes });
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  const headerBytes = Buffer.alloc(8 + jsonBytes.length);
  headerBytes.writeBigUInt64LE(BigInt(jsonBytes.length));
  jsonBytes.copy(headerBytes, 8);
  return { headerBytes, entries, dataStart: headerBytes.length, size: headerBytes.length + offset };
}

/** Bytes of `data` in `dtype`: a view when the storage already has that dtype, else converted. */
function encode(data: TensorData, dtype: WriteDtype): Buffer {
  const bytes = (a: Float32Array | Uint16Array) =>
    Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  if (data instanceof Uint16Array) return bytes(dtype === 'BF16' ? data : bf16ToF32(data));
  return bytes(dtype === 'F32' ? data : f32ToBf16(data));
}

/**
 * Supplies a tensor's data when the writer reaches it: float32, or bfloat16 bits (a Uint16Array,
 * e.g. an engine tensor stored in bf16), written in the file's dtype either way.
 */
export type TensorSource = (name: string) => TensorData | Promise<TensorData>;

/**
 * A safetensors file as its header and its tensors' bytes, never assembled in one buffer or on
 * disk: what a consumer that works tensor by tensor (an arc_v2 delta encoder) needs of a file
 * the writer would produce. `bytes` gives exactly the bytes the file holds for a tensor (a
 * view of the source's memory where the dtype matches: it must not change while in use).
 */
export interface TensorFileSource {
  /** The file's first bytes: the 8-byte header length and the padded JSON header. */
  head: Buffer;
  /** The whole file's size in bytes. */
  size: number;
  bytes(name: string): Promise<Uint8Array>;
}

/** The file `safetensorsReadable(specs, source, opts)` would produce, tensor by tensor. */
export function safetensorsTensors(
  specs: readonly TensorSpec[],
  source: TensorSource,
  opts: WriteOptions = {},
): TensorFileSource {
  const dtype = opts.dtype ?? 'F32';
  const layout = layoutSafetensors(specs, opts);
  const shapes = new Map(layout.entries.map((e) => [e.name, e.shape]));
  return {
    head: layout.headerBytes,
    size: layout.size,
    async bytes(name) {
      const shape = shapes.get(name);
      if (!shape)
        throw new SafetensorsError('safetensors writer', `no tensor '${name}' in this file`);
      const data = await source(name);
      if (data.length !== numel(shape))
        throw new SafetensorsError(
          'safetensors writer',
          `tensor '${name}' has ${data.length} values, its shape [${shape}] needs ${numel(shape)}`,
        );
      return encode(data, dtype);
    },
  };
}

/** Largest piece handed to the stream at once (bounds bfloat16 conversion buffers too). */
const WRITE_CHUNK_ELEMENTS = 1 << 20;

/**
 * A Readable of Buffers producing the file: header first, then each tensor in pieces of at
 * most 4 MiB of float32, asking `source` for a tensor only when the stream reaches it (plus
 * `readAheadChunks` pieces of read-ahead, 4 by default, so producing the next piece overlaps
 * the consumer's write of the last; float32 pieces are views, not copies). The stream is in
 * object mode so pieces are handed over as they are, never concatenated. `onBytes` sees every
 * byte produced (checksums).
 */
export function safetensorsReadable(
  specs: readonly TensorSpec[],
  source: TensorSource,
  opts: WriteOptions & { onBytes?: (chunk: Buffer) => void; readAheadChunks?: number } = {},
): { layout: SafetensorsLayout; stream: Readable } {
  const dtype = opts.dtype ?? 'F32';
  const layout = layoutSafetensors(specs, opts);
  const onBytes = opts.onBytes;
  async function* generate(): AsyncGenerator<Buffer> {
    onBytes?.(layout.headerBytes);
    yield layout.headerBytes;
    for (const e of layout.entries) {
      const data = await source(e.name);
      if (data.length !== numel(e.shape))
        throw new SafetensorsError(
          'safetensors writer',
          `tensor '${e.name}' has ${data.length} values, its shape [${e.shape}] needs ${numel(e.shape)}`,
        );
      for (let i = 0; i < data.length; i += WRITE_CHUNK_ELEMENTS) {
        const piece = encode(data.subarray(i, i + WRITE_CHUNK_ELEMENTS), dtype);
        onBytes?.(piece);
        yield piece;
      }
    }
  }
  const highWaterMark = Math.max(1, opts.readAheadChunks ?? 4);
  return { layout, stream: Readable.from(generate(), { objectMode: true, highWaterMark }) };
}

function tensorMapSource(tensors: TensorMap): TensorSource {
  return (name) => tensors.get(name)!.data;
}

function sortedSpecs(tensors: TensorMap): TensorSpec[] {
  return [...tensors.keys()].sort().map((name) => ({ name, shape: tensors.get(name)!.shape }));
}

/** Serialises tensors (sorted by name, 8-byte aligned data) as float32 or bfloat16. */
export function serializeSafetensors(tensors: TensorMap, opts: WriteOptions = {}): Buffer {
  const dtype = opts.dtype ?? 'F32';
  const layout = layoutSafetensors(sortedSpecs(tensors), opts);
  return Buffer.concat([
    layout.headerBytes,
    ...layout.entries.map((e) => encode(tensors.get(e.name)!.data, dtype)),
  ]);
}

/** Writes a stream to `path` through a temporary file renamed into place. */
async function writeStreamAtomically(path: string, stream: Readable): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    await pipeline(stream, createWriteStream(tmp));
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Writes atomically: a temporary file renamed into place. */
export async function writeSafetensors(
  path: string,
  tensors: TensorMap,
  opts: WriteOptions = {},
): Promise<void> {
  await writeSafetensorsFile(path, sortedSpecs(tensors), tensorMapSource(tensors), opts);
}

/** Streams tensors into a local file (atomically), one tensor at a time. */
export async function writeSafetensorsFile(
  path: string,
  specs: readonly TensorSpec[],
  source: TensorSource,
  opts: WriteOptions = {},
): Promise<SafetensorsLayout> {
  const { layout, stream } = safetensorsReadable(specs, source, opts);
  await writeStreamAtomically(path, stream);
  return layout;
}

// ---------------------------------------------------------------------------------------
// Sharding
// ---------------------------------------------------------------------------------------

export const safetensorsIndexSchema = z.object({
  metadata: z.object({ total_size: z.number().int().nonnegative() }).passthrough().optional(),
  weight_map: z.record(z.string(), z.string()),
});
export type SafetensorsIndex = z.infer<typeof safetensorsIndexSchema>;

export interface ShardPlan {
  files: { file: string; specs: TensorSpec[]; bytes: number }[];
  /** Present when there is more than one shard (HuggingFace writes no index for one file). */
  index: SafetensorsIndex | null;
  /** `${prefix}.safetensors.index.json`. */
  indexFile: string;
}

export interface ShardOptions {
  /** Largest tensor-data size of one shard; a single larger tensor gets a shard of its own. */
  maxShardBytes?: number;
  dtype?: WriteDtype;
  /** File name stem: `model` gives model.safetensors or model-00001-of-00003.safetensors. */
  prefix?: string;
}

/** HuggingFace's default shard size limit (5 GB). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

export function shardFileName(prefix: string, index: number, count: number): string {
  if (count === 1) return `${prefix}.safetensors`;
  const pad = (n: number) => String(n).padStart(5, '0');
  return `${prefix}-${pad(index + 1)}-of-${pad(count)}.safetensors`;
}

/** Splits tensors (in the given order) into shards of at most `maxShardBytes` tensor bytes. */
export function planShards(specs: readonly TensorSpec[], opts: ShardOptions = {}): ShardPlan {
  const max = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(max > 0))
    throw new SafetensorsError('safetensors writer', 'maxShardBytes must be positive');
  const width = DTYPE_BYTES[opts.dtype ?? 'F32'];
  const prefix = opts.prefix ?? 'model';
  const groups: { specs: TensorSpec[]; bytes: number }[] = [];
  let cur: { specs: TensorSpec[]; bytes: number } | null = null;
  let total = 0;
  for (const s of specs) {
    const bytes = numel(s.shape) * width;
    total += bytes;
    if (!cur || (cur.specs.length > 0 && cur.bytes + bytes > max)) {
      cur = { specs: [], bytes: 0 };
      groups.push(cur);
    }
    cur.specs.push(s);
    cur.bytes += bytes;
  }
  if (groups.length === 0) groups.push({ specs: [], bytes: 0 });
  const files = groups.map((g, i) => ({ file: shardFileName(prefix, i, groups.length), ...g }));
  const index: SafetensorsIndex | null =
    files.length > 1
      ? {
          metadata: { total_size: total },
          weight_map: Object.fromEntries(
            files.flatMap((f) => f.specs.map((s) => [s.name, f.file] as const)),
          ),
        }
      : null;
  return { files, index, indexFile: `${prefix}.safetensors.index.json` };
}

/** Writes tensors to `dir` as one file or as shards plus the index; returns the plan. */
export async function writeShardedSafetensors(
  dir: string,
  tensors: TensorMap,
  opts: ShardOptions & { metadata?: Record<string, string> } = {},
): Promise<ShardPlan> {
  const plan = planShards(sortedSpecs(tensors), opts);
  await mkdir(dir, { recursive: true });
  for (const f of plan.files)
    await writeSafetensorsFile(join(dir, f.file), f.specs, tensorMapSource(tensors), opts);
  if (plan.index)
    await writeFile(join(dir, plan.indexFile), `${JSON.stringify(plan.index, null, 2)}\n`);
  return plan;
}

/** The weight files of a directory: the index's shards when it exists, else `${prefix}.safetensors`. */
export async function shardFilesOf(dir: string, prefix = 'model'): Promise<string[]> {
  const indexPath = join(dir, `${prefix}.safetensors.index.json`);
  let text: string | null = null;
  try {
    text = await readFile(indexPath, 'utf8');
  } catch {
    text = null;
  }
  if (text === null) return [join(dir, `${prefix}.safetensors`)];
  return parseShardIndex(text, indexPath).map((f) => join(dir, f));
}

/** The distinct shard files an index names, validated (no paths outside the directory). */
export function parseShardIndex(text: string, source: string): string[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(source, `index is not valid JSON (${(err as Error).message})`);
  }
  const parsed = safetensorsIndexSchema.safeParse(raw);
  if (!parsed.success)
    throw new SafetensorsError(
      source,
      'expected {"metadata": {"total_size"}, "weight_map": {tensor: file}}',
    );
  const files = [...new Set(Object.values(parsed.data.weight_map))].sort();
  for (const f of files)
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*\.safetensors$/.test(f))
      throw new SafetensorsError(
        source,
        `shard file name '${f}' is not a plain *.safetensors name`,
      );
  return files;
}

/** Reads every tensor of a (possibly sharded) directory. */
export async function readShardedSafetensors(
  dir: string,
  prefix = 'model',
): Promise<ParsedSafetensors> {
  const tensors: TensorMap = new Map();
  let metadata: Record<string, string> = {};
  for (const file of await shardFilesOf(dir, prefix)) {
    const part = await readSafetensors(file);
    metadata = { ...metadata, ...part.metadata };
    for (const [name, t] of part.tensors) {
      if (tensors.has(name))
        throw new SafetensorsError(file, `tensor '${name}' appears in two shards`);
      tensors.set(name, t);
    }
  }
  return { tensors, metadata };
}

// Byte-level safetensors: tensors as raw little-endian bytes with their dtype kept as a
// string, for code that must not convert (deltas XOR the bytes exactly as stored, in any
// dtype, and write their payloads as U8 tensors). The float-converting codec is
// ../safetensors.ts.
import type { FileHandle } from 'node:fs/promises';
import { z } from 'zod';

/** Bytes per element of every dtype safetensors defines with a whole-byte width. */
export const RAW_DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

export interface RawTensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range relative to the data section. */
  begin: number;
  end: number;
}

export interface RawHeader {
  /** The header's JSON bytes exactly as stored (trailing space padding included). */
  headerBytes: Buffer;
  metadata: Record<string, string>;
  /** In header order. */
  entries: RawTensorEntry[];
  byName: Map<string, RawTensorEntry>;
  /** Absolute offset of the data section: 8 + header length. */
  dataStart: number;
}

export interface RawSafetensors extends RawHeader {
  /** The whole file. */
  file: Buffer;
}

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Parses a whole safetensors file; throws Error with `source` in the message on any defect. */
export function parseRawSafetensors(file: Buffer, source: string): RawSafetensors {
  return { ...parseRawHeader(file, file.length, source), file };
}

/** The header length a file's first 8 bytes declare (checked against the file size). */
export function rawHeaderLength(first8: Buffer, fileSize: number, source: string): number {
  if (fileSize < 8 || first8.length < 8)
    throw new Error(
      `${source}: ${fileSize} bytes is too short for a safetensors file (truncated?)`,
    );
  const headerLen = Number(first8.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize)
    throw new Error(
      `${source}: header length ${headerLen} does not fit the file's ${fileSize} bytes (truncated?)`,
    );
  return headerLen;
}

/**
 * Parses a safetensors header from `head` (the file's first 8 + header-length bytes, or
 * more) for a file of `fileSize` bytes.
 */
export function parseRawHeader(head: Buffer, fileSize: number, source: string): RawHeader {
  const fail = (msg: string): never => {
    throw new Error(`${source}: ${msg}`);
  };
  const headerLen = rawHeaderLength(head, fileSize, source);
  const dataStart = 8 + headerLen;
  if (head.length < dataStart) fail('header is cut short');
  const headerBytes = head.subarray(8, dataStart);
  let header: unknown;
  try {
    header = JSON.parse(headerBytes.toString('utf8'));
  } catch (err) {
    fail(`header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail('header is not a JSON object');
  const dataSize = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const entries: RawTensorEntry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      const parsed = z.record(z.string(), z.string()).safeParse(raw);
      if (!parsed.success) fail('__metadata__ must map strings to strings');
      else metadata = parsed.data;
      continue;
    }
    const parsed = entrySchema.safeParse(raw);
    if (!parsed.success) return fail(`tensor '${name}' has a malformed header entry`);
    const { dtype, shape } = parsed.data;
    const [begin, end] = parsed.data.data_offsets;
    const width = RAW_DTYPE_BYTES[dtype];
    if (width === undefined) fail(`tensor '${name}' has unsupported dtype ${dtype}`);
    const bytes = shape.reduce((a, b) => a * b, 1) * (width ?? 0);
    if (end < begin || end - begin !== bytes)
      fail(
        `tensor '${name}' byte range [${begin}, ${end}) does not match shape ${JSON.stringify(shape)} ${dtype}`,
      );
    if (end > dataSize)
      fail(
        `tensor '${name}' ends at byte ${end} but the data section has ${dataSize} bytes (truncated?)`,
      );
    entries.push({ name, dtype, shape, begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i]!.begin < sorted[i - 1]!.end)
      fail(`tensors '${sorted[i - 1]!.name}' and '${sorted[i]!.name}' overlap`);
  return {
    headerBytes,
    metadata,
    entries,
    byName: new Map(entries.map((e) => [e.name, e])),
    dataStart,
  };
}

/** A tensor's bytes (a view into the file). */
export function tensorBytes(st: RawSafetensors, entry: RawTensorEntry): Buffer {
  return st.file.subarray(st.dataStart + entry.begin, st.dataStart + entry.end);
}

/**
 * Writes 1-D U8 tensors the way Python's safetensors `save_file` lays them out: header
 * `{"__metadata__": {...}, name: {"dtype": "U8", "shape": [n], "data_offsets": [b, e]}, ...}`
 * with tensors in name order (one dtype, so safetensors' alignment-then-name order is name
 * order), data packed in that order, the header padded with spaces to a multiple of 8.
 */
export function serializeU8Safetensors(
  tensors: ReadonlyMap<string, Uint8Array>,
  metadata: Record<string, string>,
): Buffer {
  const names = [...tensors.keys()].sort(byCodeUnit);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    const meta: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort(byCodeUnit)) meta[k] = metadata[k]!;
    header.__metadata__ = meta;
  }
  let offset = 0;
  for (const name of names) {
    const n = tensors.get(name)!.byteLength;
    header[name] = { dtype: 'U8', shape: [n], data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.allocUnsafe(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let at = 8 + json.length;
  for (const name of names) {
    const t = tensors.get(name)!;
    out.set(t, at);
    at += t.byteLength;
  }
  return out;
}

/** Orders like Rust's String Ord (bytes; code units agree for the names we meet). */
function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Reads exactly `length` bytes at `position` (Error naming `source` when the file is short). */
export async function readFully(
  fh: FileHandle,
  length: number,
  position: number,
  source: string,
): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(
      buf,
      done,
      Math.min(length - done, 1 << 30),
      position + done,
    );
    if (bytesRead === 0)
      throw new Error(
        `${source}: file ends at byte ${position + done}, expected ${position + length} (truncated?)`,
      );
    done += bytesRead;
  }
  return buf;
}

/** The header of an open safetensors file, and the file's size. */
export async function readRawHeader(
  fh: FileHandle,
  source: string,
): Promise<RawHeader & { size: number }> {
  const { size } = await fh.stat();
  const first = size >= 8 ? await readFully(fh, 8, 0, source) : Buffer.alloc(0);
  const len = rawHeaderLength(first, size, source);
  return { ...parseRawHeader(await readFully(fh, 8 + len, 0, source), size, source), size };
}

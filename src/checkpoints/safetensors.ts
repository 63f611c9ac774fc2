// The safetensors format: 8-byte little-endian header length, a JSON header mapping tensor
// names to {dtype, shape, data_offsets} (plus optional string `__metadata__`), then the raw
// little-endian tensor bytes. Reading converts every float dtype to float32.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { bf16ToF32, DTYPE_BYTES, f16ToF32, f32ToBf16, type StorageDtype } from '../engine/dtype.js';

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

export type TensorMap = Map<string, Tensor>;

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

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

/** Parses a safetensors buffer; float dtypes become float32, anything else is an error. */
export function parseSafetensors(buf: Buffer, source = 'safetensors'): ParsedSafetensors {
  if (buf.length < 8)
    throw new SafetensorsError(source, 'file is shorter than the 8-byte header length');
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (headerLen > buf.length - 8)
    throw new SafetensorsError(source, `header length ${headerLen} exceeds the file size`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new SafetensorsError(source, `header is not valid JSON (${(err as Error).message})`);
  }
  const dataStart = 8 + headerLen;
  const tensors: TensorMap = new Map();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = z.record(z.string(), z.string()).parse(raw);
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
    const count = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== count * width || dataStart + end > buf.length)
      throw new SafetensorsError(
        source,
        `tensor '${name}' byte range [${begin}, ${end}) does not match shape ${JSON.stringify(shape)} ${dtype}`,
      );
    const bytes = buf.subarray(dataStart + begin, dataStart + end);
    tensors.set(name, { shape, data: decode(bytes, dtype as StorageDtype, count) });
  }
  return { tensors, metadata };
}

function decode(bytes: Buffer, dtype: StorageDtype, count: number): Float32Array {
  // Copy into an aligned buffer: typed-array views need element alignment.
  const aligned = new Uint8Array(bytes).buffer;
  switch (dtype) {
    case 'F32':
      return new Float32Array(aligned, 0, count);
    case 'F64':
      return Float32Array.from(new Float64Array(aligned, 0, count));
    case 'BF16':
      return bf16ToF32(new Uint16Array(aligned, 0, count));
    case 'F16':
      return f16ToF32(new Uint16Array(aligned, 0, count));
  }
}

/** Reads float64 tensors without narrowing (reference vectors are stored in float64). */
export function parseSafetensorsF64(
  buf: Buffer,
  source = 'safetensors',
): Map<string, { shape: number[]; data: Float64Array }> {
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    unknown
  >;
  const out = new Map<string, { shape: number[]; data: Float64Array }>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const {
      dtype,
      shape,
      data_offsets: [begin, end],
    } = entrySchema.parse(raw);
    if (dtype !== 'F64')
      throw new SafetensorsError(source, `tensor '${name}' is ${dtype}, expected F64`);
    const bytes = new Uint8Array(buf.subarray(8 + headerLen + begin, 8 + headerLen + end)).buffer;
    out.set(name, { shape, data: new Float64Array(bytes) });
  }
  return out;
}

export async function readSafetensors(path: string): Promise<ParsedSafetensors> {
  return parseSafetensors(await readFile(path), path);
}

/** Serialises tensors (sorted by name, 8-byte aligned data) as float32 or bfloat16. */
export function serializeSafetensors(
  tensors: TensorMap,
  opts: { dtype?: 'F32' | 'BF16'; metadata?: Record<string, string> } = {},
): Buffer {
  const dtype = opts.dtype ?? 'F32';
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (opts.metadata) header.__metadata__ = opts.metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const bytes =
      dtype === 'F32'
        ? new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
        : new Uint8Array(f32ToBf16(t.data).buffer);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  return Buffer.concat([prefix, headerBytes, ...chunks]);
}

/** Writes atomically: a temporary file renamed into place. */
export async function writeSafetensors(
  path: string,
  tensors: TensorMap,
  opts: { dtype?: 'F32' | 'BF16'; metadata?: Record<string, string> } = {},
): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, serializeSafetensors(tensors, opts));
  await rename(tmp, path);
}

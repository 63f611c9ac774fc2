/**
 * Tensors on the wire: dense little-endian bytes with a dtype and a shape (`Tensor`), and one
 * tensor per datum batched into a single buffer with int64 byte offsets (`BatchedTensor`) —
 * the Tinker wire shapes. Both the pod and the SDK encode and decode through here, so a
 * malformed buffer fails the same way on either side: an `invalid_datum` TrainerError naming
 * the field.
 */
import { endianness } from 'node:os';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  type BatchedTensor,
  type BatchedTensorSchema,
  DType,
  type Tensor,
  type TensorSchema,
} from '../gen/temper/trainer/v1/trainer_pb.js';
import { TrainerError } from './errors.js';

if (endianness() !== 'LE') {
  throw new Error('temper trainer wire format needs a little-endian host');
}

export type WireDtype = 'float32' | 'float64' | 'int32' | 'int64' | 'bfloat16';

export type DecodedArray = Float32Array | Float64Array | Int32Array;

export interface DecodedTensor {
  data: DecodedArray;
  shape: number[];
  dtype: WireDtype;
}

const TO_PROTO: Record<WireDtype, DType> = {
  float32: DType.FLOAT32,
  float64: DType.FLOAT64,
  int32: DType.INT32,
  int64: DType.INT64,
  bfloat16: DType.BFLOAT16,
};

const ELEMENT_BYTES: Record<WireDtype, number> = {
  float32: 4,
  float64: 8,
  int32: 4,
  int64: 8,
  bfloat16: 2,
};

export function wireDtype(dtype: DType, what: string): WireDtype {
  switch (dtype) {
    case DType.FLOAT32:
      return 'float32';
    case DType.FLOAT64:
      return 'float64';
    case DType.INT32:
      return 'int32';
    case DType.INT64:
      return 'int64';
    case DType.BFLOAT16:
      return 'bfloat16';
    default:
      throw new TrainerError(
        'invalid_datum',
        `${what}: dtype is ${DType[dtype] ?? dtype}; set float32, float64, int32, int64 or bfloat16`,
        { field: what },
      );
  }
}

export function protoDtype(dtype: WireDtype): DType {
  return TO_PROTO[dtype];
}

/** A copy of `bytes` in a fresh, aligned ArrayBuffer. */
function aligned(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy.buffer;
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Decodes `bytes` of `dtype`: integers to Int32Array (int64 checked to fit), floats as is, bf16 widened. */
export function decodeArray(bytes: Uint8Array, dtype: WireDtype, what: string): DecodedArray {
  const size = ELEMENT_BYTES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new TrainerError(
      'invalid_datum',
      `${what}: ${bytes.byteLength} bytes is not a whole number of ${dtype} values (${size} bytes each)`,
      { field: what },
    );
  }
  const buffer = aligned(bytes);
  switch (dtype) {
    case 'float32':
      return new Float32Array(buffer);
    case 'float64':
      return new Float64Array(buffer);
    case 'int32':
      return new Int32Array(buffer);
    case 'int64': {
      const wide = new BigInt64Array(buffer);
      const out = new Int32Array(wide.length);
      for (let i = 0; i < wide.length; i++) {
        const v = wide[i]!;
        if (v > 2147483647n || v < -2147483648n) {
          throw new TrainerError(
            'invalid_datum',
            `${what}[${i}] = ${v} does not fit a 32-bit integer`,
            { field: what },
          );
        }
        out[i] = Number(v);
      }
      return out;
    }
    case 'bfloat16': {
      const half = new Uint16Array(buffer);
      const wide = new Uint32Array(half.length);
      for (let i = 0; i < half.length; i++) wide[i] = half[i]! << 16;
      return new Float32Array(wide.buffer);
    }
  }
}

/** Encodes numbers as `dtype` little-endian bytes. */
export function encodeArray(values: ArrayLike<number>, dtype: WireDtype): Uint8Array {
  switch (dtype) {
    case 'float32':
      return bytesOf(values instanceof Float32Array ? values : Float32Array.from(values));
    case 'float64':
      return bytesOf(values instanceof Float64Array ? values : Float64Array.from(values));
    case 'int32':
      return bytesOf(values instanceof Int32Array ? values : Int32Array.from(values));
    case 'int64': {
      const out = new BigInt64Array(values.length);
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        if (!Number.isInteger(v)) {
          throw new TrainerError(
            'invalid_datum',
            `int64 tensor value [${i}] = ${v} is not an integer`,
          );
        }
        out[i] = BigInt(v);
      }
      return bytesOf(out);
    }
    case 'bfloat16': {
      const f = Float32Array.from(values);
      const u = new Uint32Array(f.buffer);
      const out = new Uint16Array(f.length);
      for (let i = 0; i < f.length; i++) {
        const x = u[i]!;
        // round to nearest even, like torch
        out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
      }
      return bytesOf(out);
    }
  }
}

export function encodeInt32(values: ArrayLike<number>): Uint8Array {
  return encodeArray(values, 'int32');
}

export function decodeInt32(bytes: Uint8Array, what: string): Int32Array {
  return decodeArray(bytes, 'int32', what) as Int32Array;
}

export function decodeFloat32(bytes: Uint8Array, what: string): Float32Array {
  return decodeArray(bytes, 'float32', what) as Float32Array;
}

function shapeOf(raw: readonly bigint[], what: string): number[] {
  return raw.map((d, i) => {
    if (d < 0n || d > 2147483647n) {
      throw new TrainerError(
        'invalid_datum',
        `${what}: shape[${i}] = ${d} is not a valid dimension`,
        {
          field: what,
        },
      );
    }
    return Number(d);
  });
}

/** Decodes a Tensor, checking that its shape matches its data. */
export function decodeTensor(t: Tensor, what: string): DecodedTensor {
  const dtype = wireDtype(t.dtype, what);
  const data = decodeArray(t.data, dtype, what);
  const shape = t.shape.length > 0 ? shapeOf(t.shape, what) : [data.length];
  const size = shape.reduce((a, b) => a * b, 1);
  if (size !== data.length) {
    throw new TrainerError(
      'invalid_datum',
      `${what} has shape [${shape.join(', ')}] (${size} values) but its data holds ${data.length} ${dtype} values`,
      { field: what },
    );
  }
  return { data, shape, dtype };
}

export function encodeTensor(
  data: ArrayLike<number>,
  dtype: WireDtype,
  shape: readonly number[] = [data.length],
): MessageInitShape<typeof TensorSchema> {
  return { data: encodeArray(data, dtype), dtype: TO_PROTO[dtype], shape: shape.map(BigInt) };
}

/**
 * Batches one tensor per datum: datum i has `parts[i].length / prod(trailingShape)` rows. The
 * offsets are byte offsets, num_datums + 1 of them.
 */
export function encodeBatched(
  parts: readonly ArrayLike<number>[],
  dtype: WireDtype,
  trailingShape: readonly number[] = [],
): MessageInitShape<typeof BatchedTensorSchema> {
  const size = ELEMENT_BYTES[dtype];
  const offsets = new BigInt64Array(parts.length + 1);
  let total = 0;
  for (let i = 0; i < parts.length; i++) {
    total += parts[i]!.length;
    offsets[i + 1] = BigInt(total * size);
  }
  const data = new Uint8Array(total * size);
  let at = 0;
  for (const part of parts) {
    const bytes = encodeArray(part, dtype);
    data.set(bytes, at);
    at += bytes.byteLength;
  }
  return {
    data,
    offsets: bytesOf(offsets),
    dtype: TO_PROTO[dtype],
    trailingShape: trailingShape.map(BigInt),
  };
}

export interface DecodedBatched {
  parts: DecodedArray[];
  dtype: WireDtype;
  trailingShape: number[];
}

/** Splits a BatchedTensor into its per-datum arrays, checking offsets and trailing shape. */
export function decodeBatched(b: BatchedTensor, what: string): DecodedBatched {
  const dtype = wireDtype(b.dtype, what);
  const size = ELEMENT_BYTES[dtype];
  if (b.offsets.byteLength % 8 !== 0 || b.offsets.byteLength < 8) {
    throw new TrainerError(
      'invalid_datum',
      `${what}: offsets must hold num_datums + 1 int64 values`,
      {
        field: what,
      },
    );
  }
  const offsets = new BigInt64Array(aligned(b.offsets));
  const trailingShape = shapeOf(b.trailingShape, what);
  const row = trailingShape.reduce((a, c) => a * c, 1);
  if (offsets[0] !== 0n || offsets[offsets.length - 1] !== BigInt(b.data.byteLength)) {
    throw new TrainerError(
      'invalid_datum',
      `${what}: offsets must start at 0 and end at the data length (${b.data.byteLength} bytes)`,
      { field: what },
    );
  }
  const parts: DecodedArray[] = [];
  for (let i = 0; i + 1 < offsets.length; i++) {
    const start = offsets[i]!;
    const end = offsets[i + 1]!;
    if (end < start || (end - start) % BigInt(size * Math.max(row, 1)) !== 0n) {
      throw new TrainerError(
        'invalid_datum',
        `${what}: datum ${i} spans bytes ${start}..${end}, not a whole number of rows`,
        { datum: i, field: what },
      );
    }
    parts.push(decodeArray(b.data.subarray(Number(start), Number(end)), dtype, `${what}[${i}]`));
  }
  return { parts, dtype, trailingShape };
}

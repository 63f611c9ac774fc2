// Conversions between the storage dtypes we accept and float32, the engine's compute dtype.

export type StorageDtype = 'F32' | 'F16' | 'BF16' | 'F64';

export const DTYPE_BYTES: Record<StorageDtype, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * A tensor's values as held in memory: float32, or bfloat16 bits in a Uint16Array (how a
 * frozen base kept in bf16 is stored, and how the safetensors writer takes bf16 data).
 */
export type TensorData = Float32Array | Uint16Array;

/** float32 values of a TensorData (the array itself when already float32). */
export function tensorDataToF32(data: TensorData): Float32Array {
  return data instanceof Float32Array ? data : bf16ToF32(data);
}

/** bfloat16 bits → float32 (exact: bf16 is the top half of a float32). */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i]! << 16;
  return out;
}

/** float32 → bfloat16 bits with round-to-nearest-even (NaN stays NaN). */
export function f32ToBf16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const x = inBits[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      out[i] = (x >>> 16) | 0x40;
      continue;
    }
    const rounding = 0x7fff + ((x >>> 16) & 1);
    out[i] = ((x + rounding) >>> 16) & 0xffff;
  }
  return out;
}

/** IEEE half bits → float32 (subnormals, infinities and NaN included). */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) out[i] = sign * frac * 2 ** -24;
    else if (exp === 31) out[i] = frac === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
    else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}

/** float32 → IEEE half bits, round-to-nearest-even via float64 arithmetic. */
export function f32ToF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i]!;
    const x = u32[0]!;
    const sign = (x >>> 16) & 0x8000;
    const v = Math.abs(values[i]!);
    if (Number.isNaN(v)) out[i] = sign | 0x7e00;
    else if (v >= 65520) out[i] = sign | 0x7c00;
    else if (v < 2 ** -14) out[i] = sign | roundEven(v / 2 ** -24);
    else {
      const e = Math.floor(Math.log2(v));
      const exp = Math.min(Math.max(e, -14), 15);
      let mant = roundEven((v / 2 ** exp - 1) * 1024);
      let biased = exp + 15;
      if (mant === 1024) {
        mant = 0;
        biased += 1;
      }
      out[i] = sign | (biased << 10) | mant;
    }
  }
  return out;
}

function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

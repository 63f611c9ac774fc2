// Adler-32 (RFC 1950), the checksum arc_v2 deltas carry per tensor: `checksum_format:
// "alder32"` (sic, the reference platform's spelling) is the decimal string of this value
// over the tensor's little-endian bytes, the same number Python's zlib.adler32 gives.

import { xorAdler32Simd } from './xor-adler-wasm.js';

const MOD = 65521;
/** Largest run of bytes before b can pass 2^32 (zlib's NMAX); doubles would allow more. */
const NMAX = 5552;

/** Adler-32 of `bytes`, continuing from `start` (1 for a fresh checksum). */
export function adler32(bytes: Uint8Array, start = 1): number {
  let a = start & 0xffff;
  let b = (start >>> 16) & 0xffff;
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const end = Math.min(i + NMAX, n);
    const end8 = end - ((end - i) & 7);
    for (; i < end8; i += 8) {
      a += bytes[i]!;
      b += a;
      a += bytes[i + 1]!;
      b += a;
      a += bytes[i + 2]!;
      b += a;
      a += bytes[i + 3]!;
      b += a;
      a += bytes[i + 4]!;
      b += a;
      a += bytes[i + 5]!;
      b += a;
      a += bytes[i + 6]!;
      b += a;
      a += bytes[i + 7]!;
      b += a;
    }
    for (; i < end; i++) {
      a += bytes[i]!;
      b += a;
    }
    a %= MOD;
    b %= MOD;
  }
  return ((b << 16) | a) >>> 0;
}

/** The checksum as arc_v2 writes it: the decimal string of the unsigned value. */
export function alder32String(bytes: Uint8Array): string {
  return String(adler32(bytes));
}

/**
 * out = a XOR b, returning Adler-32 of out: applying an arc_v2 tensor delta and checking it in
 * one pass over memory (`out` may alias `a` or `b`). A WebAssembly SIMD kernel from 1 KiB up
 * (~30 ms per 100 MB, copies in and out included), else xorAdler32Portable.
 */
export function xorAdler32(out: Uint8Array, a: Uint8Array, b: Uint8Array): number {
  const n = out.length;
  if (a.length !== n || b.length !== n) throw new RangeError('xorAdler32: lengths differ');
  return (n >= 1024 ? xorAdler32Simd(out, a, b) : null) ?? xorAdler32Portable(out, a, b);
}

/**
 * xorAdler32 in plain JavaScript: 32-bit words when the three views share their alignment
 * (~100 ms per 100 MB, about twice xor then adler32).
 */
export function xorAdler32Portable(out: Uint8Array, a: Uint8Array, b: Uint8Array): number {
  const n = out.length;
  if (a.length !== n || b.length !== n) throw new RangeError('xorAdler32: lengths differ');
  const align = out.byteOffset & 3;
  if (n < 16 || (a.byteOffset & 3) !== align || (b.byteOffset & 3) !== align)
    return xorAdlerBytes(out, a, b, 0, n, 1);
  const head = (4 - align) & 3;
  let sum = xorAdlerBytes(out, a, b, 0, head, 1);
  const words = (n - head) >>> 2;
  sum = xorAdlerWords(
    new Int32Array(out.buffer, out.byteOffset + head, words),
    new Int32Array(a.buffer, a.byteOffset + head, words),
    new Int32Array(b.buffer, b.byteOffset + head, words),
    sum,
  );
  return xorAdlerBytes(out, a, b, head + words * 4, n, sum);
}

function xorAdlerBytes(
  out: Uint8Array,
  x: Uint8Array,
  y: Uint8Array,
  from: number,
  to: number,
  start: number,
): number {
  let a = start & 0xffff;
  let b = start >>> 16;
  let i = from;
  while (i < to) {
    const end = Math.min(i + NMAX, to);
    for (; i < end; i++) {
      const v = x[i]! ^ y[i]!;
      out[i] = v;
      a += v;
      b += a;
    }
    a %= MOD;
    b %= MOD;
  }
  return ((b << 16) | a) >>> 0;
}

/** Little-endian words: their bytes enter the checksum low byte first, as in memory. */
function xorAdlerWords(out: Int32Array, x: Int32Array, y: Int32Array, start: number): number {
  let a = start & 0xffff;
  let b = start >>> 16;
  const n = out.length;
  let w = 0;
  while (w < n) {
    // NMAX bytes between reductions keep b below 2^32, as in zlib
    const end = Math.min(w + (NMAX >>> 2), n);
    for (; w < end; w++) {
      const v = x[w]! ^ y[w]!;
      out[w] = v;
      a += v & 255;
      b += a;
      a += (v >>> 8) & 255;
      b += a;
      a += (v >>> 16) & 255;
      b += a;
      a += v >>> 24;
      b += a;
    }
    a %= MOD;
    b %= MOD;
  }
  return ((b << 16) | a) >>> 0;
}

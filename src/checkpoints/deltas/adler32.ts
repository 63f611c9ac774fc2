// Adler-32 (RFC 1950), the checksum arc_v2 deltas carry per tensor: `checksum_format:
// "alder32"` (sic, the reference platform's spelling) is the decimal string of this value
// over the tensor's little-endian bytes, the same number Python's zlib.adler32 gives.

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

// File checksums of DCP checkpoints, written as "<algorithm>:<hex>":
// - crc32 (default): CRC-32 (IEEE 802.3, zlib's), hardware-accelerated in Node's zlib at
//   several GB/s, so checking it costs less than reading the file;
// - sha256: slower (about 1 GB/s on one core) but cryptographic; `sha256sum` agrees with it.
// (CRC-32C, GCS's checksum, has no native implementation in Node.)
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';

export type ChecksumAlgorithm = 'crc32' | 'sha256';

export const CHECKSUM_PATTERN = /^(crc32:[0-9a-f]{8}|sha256:[0-9a-f]{64})$/;

export interface Checksum {
  update(bytes: Uint8Array): void;
  /** "crc32:1a2b3c4d" or "sha256:…". */
  digest(): string;
}

export const DEFAULT_CHECKSUM: ChecksumAlgorithm = 'crc32';

export function newChecksum(algorithm: ChecksumAlgorithm): Checksum {
  if (algorithm === 'sha256') {
    const h = createHash('sha256');
    return { update: (b) => h.update(b), digest: () => `sha256:${h.digest('hex')}` };
  }
  let value = 0;
  return {
    update: (b) => {
      value = crc32(b, value);
    },
    digest: () => `crc32:${(value >>> 0).toString(16).padStart(8, '0')}`,
  };
}

/** A checksum of the same algorithm as `expected` ("crc32:…" / "sha256:…"). */
export function checksumLike(expected: string): Checksum {
  return newChecksum(expected.startsWith('sha256:') ? 'sha256' : 'crc32');
}

/** Continues a raw CRC-32 value over `bytes` (0 starts a new one). */
export function crc32Update(bytes: Uint8Array, value: number): number {
  return crc32(bytes, value);
}

/** A raw CRC-32 value as a file checksum string. */
export function formatCrc32(value: number): string {
  return `crc32:${(value >>> 0).toString(16).padStart(8, '0')}`;
}

/** Multiplies a 32x32 matrix over GF(2) (one column per bit) by a vector. */
function gf2Times(matrix: Uint32Array, vector: number): number {
  let sum = 0;
  for (let i = 0, v = vector >>> 0; v !== 0; i++, v >>>= 1) if (v & 1) sum ^= matrix[i]!;
  return sum >>> 0;
}

function gf2Square(out: Uint32Array, matrix: Uint32Array): void {
  for (let n = 0; n < 32; n++) out[n] = gf2Times(matrix, matrix[n]!);
}

/**
 * The CRC-32 of A followed by B from crc(A), crc(B) and B's length (zlib's crc32_combine,
 * which Node does not expose): lets pieces of one file be checksummed on different threads.
 * Appending n zero bits to the message is a linear map of the CRC register; squaring its
 * matrix doubles n, so the cost is O(log len) 32x32 matrix products.
 */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  const odd = new Uint32Array(32); // one zero bit
  const even = new Uint32Array(32);
  odd[0] = 0xedb88320; // the reflected CRC-32 polynomial
  for (let n = 1; n < 32; n++) odd[n] = 1 << (n - 1);
  gf2Square(even, odd); // two zero bits
  gf2Square(odd, even); // four zero bits
  let crc = crcA >>> 0;
  let left = lengthB;
  // Each round squares once more (8, 16, 32, ... zero bits = 1, 2, 4, ... zero bytes).
  for (let useEven = true; left > 0; useEven = !useEven) {
    const [next, from] = useEven ? [even, odd] : [odd, even];
    gf2Square(next, from);
    if (left % 2 === 1) crc = gf2Times(next, crc);
    left = Math.floor(left / 2);
  }
  return (crc ^ crcB) >>> 0;
}

// File checksums of DCP checkpoints, written as "<algorithm>:<hex>":
// - crc32 (default): CRC-32 (IEEE 802.3, zlib's), hardware-accelerated in Node's zlib at
//   several GB/s, so checking it costs less than reading the file;
// - sha256: slower (about 1 GB/s on one core) but cryptographic; `sha256sum` agrees with it.
// (CRC-32C, GCS's checksum, has no native implementation in Node 20.)
import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';

export type ChecksumAlgorithm = 'crc32' | 'sha256';

export const CHECKSUM_PATTERN = /^(crc32:[0-9a-f]{8}|sha256:[0-9a-f]{64})$/;

export interface Checksum {
  update(bytes: Uint8Array): void;
  /** "crc32:1a2b3c4d" or "sha256:…". */
  digest(): string;
}

type Crc32 = (data: Uint8Array, value?: number) => number;
const crc32: Crc32 | undefined = (zlib as unknown as { crc32?: Crc32 }).crc32;

/** crc32 where Node's zlib has it (Node ≥ 20.15), else sha256. */
export const DEFAULT_CHECKSUM: ChecksumAlgorithm = crc32 ? 'crc32' : 'sha256';

export function newChecksum(algorithm: ChecksumAlgorithm): Checksum {
  if (algorithm === 'sha256') {
    const h = createHash('sha256');
    return { update: (b) => h.update(b), digest: () => `sha256:${h.digest('hex')}` };
  }
  if (!crc32) throw new Error('crc32 checksums need Node >= 20.15 (zlib.crc32)');
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

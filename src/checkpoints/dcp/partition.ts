// The one partition function of DCP checkpoints: used both to decide what each rank writes
// on save and what each rank reads on load, so a checkpoint saved by R ranks can be loaded
// by any R'. Rank r of R owns a contiguous slice of every tensor's flat (row-major) index
// range; the first n % R ranks get one element more.

export interface FlatRange {
  /** First flat index (inclusive). */
  start: number;
  /** One past the last flat index. */
  end: number;
}

export function partitionRange(numel: number, rank: number, worldSize: number): FlatRange {
  if (!Number.isInteger(worldSize) || worldSize < 1)
    throw new RangeError(`world size must be a positive integer (got ${worldSize})`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize)
    throw new RangeError(`rank must be an integer in [0, ${worldSize}) (got ${rank})`);
  if (!Number.isInteger(numel) || numel < 0)
    throw new RangeError(`element count must be a non-negative integer (got ${numel})`);
  const base = Math.floor(numel / worldSize);
  const rem = numel % worldSize;
  const start = rank * base + Math.min(rank, rem);
  return { start, end: start + base + (rank < rem ? 1 : 0) };
}

/** The part of `a` that `b` also covers (empty when they do not meet). */
export function intersectRanges(a: FlatRange, b: FlatRange): FlatRange | null {
  const start = Math.max(a.start, b.start);
  const end = Math.min(a.end, b.end);
  return end > start ? { start, end } : null;
}

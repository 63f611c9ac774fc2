// arc_v2 deltas, byte-compatible with the reference platform's published implementation
// (PyPI `fireworks-delta-compression`, backend "arc_v2"). The format, as we write and read it:
//
// Tensor delta. Old and new tensor must have the same dtype and shape. Take both as their
// raw little-endian bytes (exactly as a safetensors file stores them), XOR them byte by
// byte, and compress the XOR with zstd (one standard frame; the reference uses level 3).
// Unchanged bytes XOR to zero, and a small weight update only flips low mantissa bits, so
// the XOR is mostly zero bytes and compresses well. The checksum is Adler-32 of the NEW
// tensor's bytes, written as a decimal string (`checksum_format: "alder32"`).
// An empty tensor (a zero dimension) has an empty XOR; its payload is whatever frame the
// encoder made of zero bytes and is never decoded.
//
// Delta file. For a weights file `model-00000.safetensors` of the new snapshot, the delta
// file has the same name and is itself a safetensors file: one 1-D U8 tensor per tensor of
// the original, under the same name, holding the compressed XOR; `__metadata__` maps every
// tensor name to its checksum. The delta does not repeat dtypes or shapes: they come from
// the previous snapshot's file, which must hold the same tensor names. Applying a delta:
// decompress each payload (it must be exactly as long as the old tensor's bytes), XOR it
// into the old tensor's bytes, and compare Adler-32 of the result with the checksum.
//
// We apply a delta to the previous file's bytes in place (as the reference's in-place path
// does): header and layout come from the previous file, so the result is the new file
// exactly when both files have the same header. Encoding therefore insists on identical
// headers by default (`exactFile`), so a delta we write always reconstructs the exact file;
// the snapshot manifest (snapshot.ts) also records the new file's sha256 to prove it.
import { createHash } from 'node:crypto';
import { copyFile, open, rename, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { CheckpointError } from '../dcp/errors.js';
import type { TensorFileSource } from '../safetensors.js';
import { alder32String, xorAdler32 } from './adler32.js';
import {
  parseRawHeader,
  parseRawSafetensors,
  type RawHeader,
  type RawSafetensors,
  type RawTensorEntry,
  readFully,
  readRawHeader,
  serializeU8Safetensors,
  tensorBytes,
} from './raw-safetensors.js';
import {
  DEFAULT_ZSTD_LEVEL,
  zstdCompress,
  zstdCompressAsync,
  zstdDecompress,
  zstdDecompressAsync,
} from './zstd.js';

export const COMPRESSION_FORMAT = 'arc_v2';
export const CHECKSUM_FORMAT = 'alder32';

/** out[i] = a[i] ^ b[i]; out may alias a or b. Uses 32-bit words where alignment allows. */
export function xorBytes(out: Uint8Array, a: Uint8Array, b: Uint8Array): void {
  const n = out.length;
  if (a.length !== n || b.length !== n) throw new RangeError('xorBytes: lengths differ');
  let i = 0;
  const align = out.byteOffset & 3;
  if ((a.byteOffset & 3) === align && (b.byteOffset & 3) === align) {
    const head = Math.min(n, (4 - align) & 3);
    for (; i < head; i++) out[i] = a[i]! ^ b[i]!;
    const words = (n - i) >>> 2;
    if (words > 0) {
      const o32 = new Int32Array(out.buffer, out.byteOffset + i, words);
      const a32 = new Int32Array(a.buffer, a.byteOffset + i, words);
      const b32 = new Int32Array(b.buffer, b.byteOffset + i, words);
      for (let w = 0; w < words; w++) o32[w] = a32[w]! ^ b32[w]!;
      i += words * 4;
    }
  }
  for (; i < n; i++) out[i] = a[i]! ^ b[i]!;
}

export interface TensorDelta {
  /** The zstd frame of old XOR new. */
  payload: Buffer;
  /** Adler-32 of the new bytes, decimal. */
  checksum: string;
}

/** Encodes one tensor (raw bytes of the same dtype and shape). */
export function encodeTensorDelta(
  prev: Uint8Array,
  next: Uint8Array,
  level = DEFAULT_ZSTD_LEVEL,
): TensorDelta {
  if (prev.length !== next.length)
    throw new RangeError(`tensor byte lengths differ: ${prev.length} != ${next.length}`);
  const diff = Buffer.allocUnsafe(next.length);
  xorBytes(diff, prev, next);
  return { payload: zstdCompress(diff, level), checksum: alder32String(next) };
}

/**
 * Decodes one tensor into `out` (which may be `prev` itself, for in-place application) and
 * verifies the checksum. Throws Error with a plain message; callers add the file and tensor.
 */
export function applyTensorDelta(
  prev: Uint8Array,
  payload: Uint8Array,
  checksum: string,
  out: Uint8Array = new Uint8Array(prev.length),
): Uint8Array {
  const sum = prev.length > 0 ? xorAdler32(out, prev, zstdDecompress(payload, prev.length)) : 1;
  checkSum(sum, checksum);
  return out;
}

function checkSum(actual: number, checksum: string): void {
  if (String(actual) !== checksum)
    throw new Error(
      `checksum mismatch: reconstructed bytes have Adler-32 ${actual}, the delta says ${checksum}`,
    );
}

export interface EncodeFileOptions {
  /** zstd level (default 3, the reference's); any level decodes the same way. */
  level?: number;
  /**
   * Require byte-identical safetensors headers so that applying the delta reproduces the
   * new file exactly (default true). With false only names, dtypes and shapes must agree,
   * and the reconstruction has the new tensors in the previous file's layout.
   */
  exactFile?: boolean;
  /** Names for error messages. */
  prevSource?: string;
  nextSource?: string;
}

function parse(file: Buffer, source: string): RawSafetensors {
  try {
    return parseRawSafetensors(file, source);
  } catch (err) {
    throw new CheckpointError('corrupt', (err as Error).message, { file: source, cause: err });
  }
}

/** Checks that two files hold the same tensors (names, dtypes, shapes). */
function checkSameTensors(prev: RawHeader, next: RawHeader, ps: string, ns: string): void {
  const missing = prev.entries.filter((e) => !next.byName.has(e.name)).map((e) => e.name);
  const extra = next.entries.filter((e) => !prev.byName.has(e.name)).map((e) => e.name);
  if (missing.length || extra.length)
    throw new CheckpointError(
      'incompatible',
      `${ns} and ${ps} hold different tensors (only in the previous: ${missing.slice(0, 5).join(', ') || '-'}; only in the new: ${extra.slice(0, 5).join(', ') || '-'}): write a full snapshot instead of a delta`,
      { file: ns },
    );
  for (const e of next.entries) {
    const p = prev.byName.get(e.name)!;
    if (p.dtype !== e.dtype || JSON.stringify(p.shape) !== JSON.stringify(e.shape))
      throw new CheckpointError(
        'incompatible',
        `tensor '${e.name}' is ${e.dtype}${JSON.stringify(e.shape)} in ${ns} but ${p.dtype}${JSON.stringify(p.shape)} in ${ps}: write a full snapshot instead of a delta`,
        { file: ns },
      );
  }
}

export interface DeltaFile {
  /** The delta safetensors file. */
  file: Buffer;
  /** Tensor name → Adler-32 of its new bytes (the file's `__metadata__`). */
  checksums: Record<string, string>;
}

function prepareEncode(
  prevFile: Buffer,
  nextFile: Buffer,
  opts: EncodeFileOptions,
): { prev: RawSafetensors; next: RawSafetensors } {
  const ps = opts.prevSource ?? 'previous file';
  const ns = opts.nextSource ?? 'new file';
  const prev = parse(prevFile, ps);
  const next = parse(nextFile, ns);
  checkEncodable(prev, next, opts);
  return { prev, next };
}

function checkEncodable(prev: RawHeader, next: RawHeader, opts: EncodeFileOptions): void {
  const ps = opts.prevSource ?? 'previous file';
  const ns = opts.nextSource ?? 'new file';
  checkSameTensors(prev, next, ps, ns);
  if ((opts.exactFile ?? true) && !prev.headerBytes.equals(next.headerBytes))
    throw new CheckpointError(
      'incompatible',
      `${ns} has a different safetensors header (metadata or tensor layout) from ${ps}, so a delta could not reproduce it exactly: write a full snapshot instead`,
      { file: ns },
    );
}

function finishEncode(next: RawHeader, deltas: TensorDelta[]): DeltaFile {
  const payloads = new Map<string, Uint8Array>();
  const checksums: Record<string, string> = {};
  next.entries.forEach((e, i) => {
    payloads.set(e.name, deltas[i]!.payload);
    checksums[e.name] = deltas[i]!.checksum;
  });
  return { file: serializeU8Safetensors(payloads, checksums), checksums };
}

/** The arc_v2 delta of one safetensors file against its previous version. */
export function encodeDeltaFile(
  prevFile: Buffer,
  nextFile: Buffer,
  opts: EncodeFileOptions = {},
): DeltaFile {
  const { prev, next } = prepareEncode(prevFile, nextFile, opts);
  return finishEncode(
    next,
    next.entries.map((e) =>
      encodeTensorDelta(
        tensorBytes(prev, prev.byName.get(e.name)!),
        tensorBytes(next, e),
        opts.level,
      ),
    ),
  );
}

/** Runs fn over items with at most `limit` in flight, results in order. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

const defaultConcurrency = () => Math.max(2, availableParallelism());

/**
 * encodeDeltaFile with the zstd work on libuv's thread pool, several tensors at once (XOR
 * and checksums stay on this thread). The same bytes as the synchronous version.
 */
export async function encodeDeltaFileAsync(
  prevFile: Buffer,
  nextFile: Buffer,
  opts: EncodeFileOptions & { concurrency?: number } = {},
): Promise<DeltaFile> {
  const { prev, next } = prepareEncode(prevFile, nextFile, opts);
  const deltas = await mapLimited(
    next.entries,
    opts.concurrency ?? defaultConcurrency(),
    async (e) => {
      const p = tensorBytes(prev, prev.byName.get(e.name)!);
      const n = tensorBytes(next, e);
      const diff = Buffer.allocUnsafe(n.length);
      xorBytes(diff, p, n);
      const checksum = alder32String(n);
      return { payload: await zstdCompressAsync(diff, opts.level), checksum };
    },
  );
  return finishEncode(next, deltas);
}

/** What a delta encoded from tensors also gives: the file it stands for, hashed on the way. */
export interface DeltaFromTensors extends DeltaFile {
  /** Size and sha256 of the new file (as if it were written: header, then data in order). */
  full: { size: number; sha256: string };
}

/**
 * encodeDeltaFileAsync where the new file is given tensor by tensor (TensorFileSource: the
 * weights of a model in memory, as an export would write them) instead of as bytes: the same
 * delta file, with no copy of the new file assembled anywhere. The new file's size and sha256
 * (what a snapshot manifest records) are computed from its header and its tensors in data
 * order, which must cover the data section without gaps.
 */
export async function encodeDeltaFileFromTensors(
  prevFile: Buffer,
  next: TensorFileSource,
  opts: EncodeFileOptions & { concurrency?: number } = {},
): Promise<DeltaFromTensors> {
  const ps = opts.prevSource ?? 'previous file';
  const ns = opts.nextSource ?? 'new file';
  const prev = parse(prevFile, ps);
  let head: RawHeader;
  try {
    head = parseRawHeader(next.head, next.size, ns);
  } catch (err) {
    throw new CheckpointError('corrupt', (err as Error).message, { file: ns, cause: err });
  }
  checkEncodable(prev, head, opts);
  // the new file's bytes, in data order, through one hash
  const hash = createHash('sha256').update(next.head.subarray(0, head.dataStart));
  const bytes = new Map<string, Uint8Array>();
  let at = 0;
  for (const e of [...head.entries].sort((a, b) => a.begin - b.begin)) {
    const b = await next.bytes(e.name);
    if (e.begin !== at || b.byteLength !== e.end - e.begin)
      throw new CheckpointError(
        'invalid_argument',
        `${ns}: tensor '${e.name}' gives ${b.byteLength} bytes at data offset ${at}, its header entry says [${e.begin}, ${e.end})`,
        { file: ns },
      );
    hash.update(b);
    bytes.set(e.name, b);
    at = e.end;
  }
  if (head.dataStart + at !== next.size)
    throw new CheckpointError(
      'invalid_argument',
      `${ns}: its tensors end at byte ${head.dataStart + at} of a ${next.size}-byte file`,
      { file: ns },
    );
  const deltas = await mapLimited(
    head.entries,
    opts.concurrency ?? defaultConcurrency(),
    async (e) => {
      const p = tensorBytes(prev, prev.byName.get(e.name)!);
      const n = bytes.get(e.name)!;
      const diff = Buffer.allocUnsafe(n.length);
      xorBytes(diff, p, n);
      const checksum = alder32String(n);
      return { payload: await zstdCompressAsync(diff, opts.level), checksum };
    },
  );
  return { ...finishEncode(head, deltas), full: { size: next.size, sha256: hash.digest('hex') } };
}

export interface ApplyFileOptions {
  prevSource?: string;
  deltaSource?: string;
  /** Write into the previous file's buffer instead of a copy (left half-updated on error). */
  inPlace?: boolean;
  /**
   * Write the new file into this buffer (the previous file's size) and leave the previous
   * file untouched: no copy of the previous file first, and a buffer can be reused from one
   * load to the next. Left half-written on error.
   */
  into?: Buffer;
}

interface ApplyJob {
  name: string;
  /** The tensor's bytes in the previous file, and the region of the output to write. */
  source: Buffer;
  region: Buffer;
  payload: Buffer;
  checksum: string;
}

function prepareApply(
  prevFile: Buffer,
  deltaFile: Buffer,
  opts: ApplyFileOptions,
): { out: Buffer; jobs: ApplyJob[]; ds: string } {
  const ps = opts.prevSource ?? 'previous file';
  const ds = opts.deltaSource ?? 'delta file';
  const prev = parse(prevFile, ps);
  const delta = parse(deltaFile, ds);
  const matched = matchDelta(prev, delta, ps, ds);
  // Into the given buffer, in place, or on a copy of the previous file.
  let target: RawSafetensors;
  if (opts.into) target = { ...prev, file: withBytesOutsideTensors(prev, opts.into) };
  else target = opts.inPlace ? prev : { ...prev, file: Buffer.from(prevFile) };
  const jobs = matched.map((m) => ({
    name: m.entry.name,
    source: tensorBytes(prev, m.entry),
    region: tensorBytes(target, m.entry),
    payload: m.payload,
    checksum: m.checksum,
  }));
  return { out: target.file, jobs, ds };
}

/** `into` holding the previous file's header and any bytes between tensors (deltas keep them). */
function withBytesOutsideTensors(prev: RawSafetensors, into: Buffer): Buffer {
  if (into.length !== prev.file.length)
    throw new RangeError(`into has ${into.length} bytes, the previous file ${prev.file.length}`);
  const regions = [...prev.entries].sort((a, b) => a.begin - b.begin);
  let at = 0;
  for (const e of regions) {
    const begin = prev.dataStart + e.begin;
    if (begin > at) prev.file.copy(into, at, at, begin);
    at = Math.max(at, prev.dataStart + e.end);
  }
  if (at < into.length) prev.file.copy(into, at, at);
  return into;
}

function applyFailure(ds: string, name: string, err: unknown): CheckpointError {
  return new CheckpointError('corrupt', `${ds}: tensor '${name}': ${(err as Error).message}`, {
    file: ds,
    cause: err,
  });
}

/**
 * Applies an arc_v2 delta file to the previous version of the file and returns the new
 * file's bytes; every tensor's Adler-32 is verified (CheckpointError 'corrupt' naming the
 * file and tensor otherwise).
 */
export function applyDeltaFile(
  prevFile: Buffer,
  deltaFile: Buffer,
  opts: ApplyFileOptions = {},
): Buffer {
  const { out, jobs, ds } = prepareApply(prevFile, deltaFile, opts);
  for (const j of jobs) {
    try {
      applyTensorDelta(j.source, j.payload, j.checksum, j.region);
    } catch (err) {
      throw applyFailure(ds, j.name, err);
    }
  }
  return out;
}

/** applyDeltaFile with the zstd work on libuv's thread pool, several tensors at once. */
export async function applyDeltaFileAsync(
  prevFile: Buffer,
  deltaFile: Buffer,
  opts: ApplyFileOptions & { concurrency?: number } = {},
): Promise<Buffer> {
  const { out, jobs, ds } = prepareApply(prevFile, deltaFile, opts);
  // zstd runs on libuv's pool while this thread XORs and checks the tensors already decoded
  await mapLimited(jobs, opts.concurrency ?? defaultConcurrency(), async (j) => {
    try {
      const n = j.region.length;
      const sum =
        n > 0 ? xorAdler32(j.region, j.source, await zstdDecompressAsync(j.payload, n)) : 1;
      checkSum(sum, j.checksum);
    } catch (err) {
      throw applyFailure(ds, j.name, err);
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------
// Files on disk, one tensor at a time (weight shards are up to 5 GB, more than a Buffer or
// readFile takes): the same bytes as the in-memory functions above.
// ---------------------------------------------------------------------------------------

async function headerOf(fh: Awaited<ReturnType<typeof open>>, source: string) {
  try {
    return await readRawHeader(fh, source);
  } catch (err) {
    throw new CheckpointError('corrupt', (err as Error).message, { file: source, cause: err });
  }
}

/** encodeDeltaFile for two local files, reading one tensor at a time. */
export async function encodeDeltaFileFromPaths(
  prevPath: string,
  nextPath: string,
  opts: EncodeFileOptions & { concurrency?: number } = {},
): Promise<DeltaFile> {
  const o = {
    ...opts,
    prevSource: opts.prevSource ?? prevPath,
    nextSource: opts.nextSource ?? nextPath,
  };
  const pf = await open(prevPath, 'r');
  try {
    const nf = await open(nextPath, 'r');
    try {
      const prev = await headerOf(pf, o.prevSource);
      const next = await headerOf(nf, o.nextSource);
      checkEncodable(prev, next, o);
      const deltas = await mapLimited(
        next.entries,
        opts.concurrency ?? defaultConcurrency(),
        async (e) => {
          const pe = prev.byName.get(e.name)!;
          const [p, n] = await Promise.all([
            readFully(pf, pe.end - pe.begin, prev.dataStart + pe.begin, o.prevSource),
            readFully(nf, e.end - e.begin, next.dataStart + e.begin, o.nextSource),
          ]);
          const checksum = alder32String(n);
          xorBytes(n, p, n);
          return { payload: await zstdCompressAsync(n, opts.level), checksum };
        },
      );
      return finishEncode(next, deltas);
    } finally {
      await nf.close();
    }
  } finally {
    await pf.close();
  }
}

/**
 * applyDeltaFile from a local previous file to a local output file (written next to it and
 * renamed into place, so `outPath` is either the verified new file or untouched).
 */
export async function applyDeltaFileToPath(
  prevPath: string,
  deltaFile: Buffer,
  outPath: string,
  opts: ApplyFileOptions & { concurrency?: number } = {},
): Promise<void> {
  const ps = opts.prevSource ?? prevPath;
  const ds = opts.deltaSource ?? 'delta file';
  const delta = parse(deltaFile, ds);
  const tmp = `${outPath}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await copyFile(prevPath, tmp);
  try {
    const fh = await open(tmp, 'r+');
    try {
      const prev = await headerOf(fh, ps);
      const jobs = matchDelta(prev, delta, ps, ds);
      await mapLimited(jobs, opts.concurrency ?? defaultConcurrency(), async (j) => {
        try {
          const region = await readFully(
            fh,
            j.entry.end - j.entry.begin,
            prev.dataStart + j.entry.begin,
            ps,
          );
          const sum =
            region.length > 0
              ? xorAdler32(region, region, await zstdDecompressAsync(j.payload, region.length))
              : 1;
          checkSum(sum, j.checksum);
          let done = 0;
          while (done < region.length) {
            const { bytesWritten } = await fh.write(
              region,
              done,
              Math.min(region.length - done, 1 << 30),
              prev.dataStart + j.entry.begin + done,
            );
            done += bytesWritten;
          }
        } catch (err) {
          throw applyFailure(ds, j.entry.name, err);
        }
      });
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, outPath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Pairs each tensor of the previous file with its payload and checksum in the delta. */
function matchDelta(
  prev: RawHeader,
  delta: RawSafetensors,
  ps: string,
  ds: string,
): { entry: RawTensorEntry; payload: Buffer; checksum: string }[] {
  const missing = prev.entries.filter((e) => !delta.byName.has(e.name)).map((e) => e.name);
  const extra = delta.entries.filter((e) => !prev.byName.has(e.name)).map((e) => e.name);
  if (missing.length || extra.length)
    throw new CheckpointError(
      'incompatible',
      `${ds} does not match ${ps}: tensors only in the previous file: ${missing.slice(0, 5).join(', ') || '-'}; only in the delta: ${extra.slice(0, 5).join(', ') || '-'} (is it a delta against another snapshot?)`,
      { file: ds },
    );
  return prev.entries.map((entry) => {
    const d = delta.byName.get(entry.name)!;
    if (d.dtype !== 'U8' || d.shape.length !== 1)
      throw new CheckpointError(
        'corrupt',
        `${ds}: payload of '${entry.name}' must be a 1-D U8 tensor (got ${d.dtype}${JSON.stringify(d.shape)})`,
        { file: ds },
      );
    const checksum = delta.metadata[entry.name];
    if (checksum === undefined || !/^\d{1,10}$/.test(checksum))
      throw new CheckpointError(
        'corrupt',
        `${ds}: no ${CHECKSUM_FORMAT} checksum for tensor '${entry.name}' in __metadata__`,
        {
          file: ds,
        },
      );
    return { entry, payload: tensorBytes(delta, d), checksum };
  });
}

// Zstandard frames for arc_v2 payloads, through @toondepauw/node-zstd (libzstd compiled into
// a prebuilt Node-API binary that ships inside the npm package; nothing is downloaded).
//
// That binding compresses in streaming mode, which leaves the frame's content size out of
// the header. The reference decoder (Python `zstd.decompress`) refuses multi-block frames
// without one, so every frame we write gets the content size added to its header (RFC 8878
// §3.1.1.1): set Frame_Content_Size_flag in the frame header descriptor and insert the
// field after the dictionary id. Nothing else in the frame changes; every zstd decoder reads
// the result.
import { Decoder, Encoder } from '@toondepauw/node-zstd';

const MAGIC = 0xfd2fb528;
/** zstd's default level, the one the reference uses. */
export const DEFAULT_ZSTD_LEVEL = 3;

const encoders = new Map<number, Encoder>();
let decoder: Decoder | null = null;

interface FrameHeader {
  /** Offset of the byte after the dictionary id: where Frame_Content_Size starts. */
  fcsOffset: number;
  fcsBytes: number;
  /** null when the header does not say. */
  contentSize: number | null;
}

const DICT_ID_BYTES = [0, 1, 2, 4] as const;

function readFrameHeader(frame: Uint8Array): FrameHeader {
  if (frame.length < 6) throw new Error(`zstd frame of ${frame.length} bytes is too short`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new Error('not a zstd frame (bad magic number)');
  const fhd = frame[4]!;
  if (fhd & 0x08) throw new Error('zstd frame header has its reserved bit set');
  const fcsFlag = fhd >>> 6;
  const singleSegment = (fhd >>> 5) & 1;
  const fcsOffset = 5 + (singleSegment ? 0 : 1) + DICT_ID_BYTES[fhd & 3]!;
  const fcsBytes = fcsFlag === 0 ? singleSegment : 1 << fcsFlag;
  if (frame.length < fcsOffset + fcsBytes) throw new Error('zstd frame header is truncated');
  let contentSize: number | null = null;
  if (fcsBytes === 1) contentSize = frame[fcsOffset]!;
  else if (fcsBytes === 2) contentSize = view.getUint16(fcsOffset, true) + 256;
  else if (fcsBytes === 4) contentSize = view.getUint32(fcsOffset, true);
  else if (fcsBytes === 8) contentSize = Number(view.getBigUint64(fcsOffset, true));
  return { fcsOffset, fcsBytes, contentSize };
}

/** The content size a frame's header declares, or null when it declares none. */
export function frameContentSize(frame: Uint8Array): number | null {
  return readFrameHeader(frame).contentSize;
}

/** Adds Frame_Content_Size to a frame whose header lacks it (see the file comment). */
export function withContentSize(frame: Buffer, size: number): Buffer {
  const h = readFrameHeader(frame);
  if (h.contentSize !== null) {
    if (h.contentSize !== size)
      throw new Error(`zstd frame declares ${h.contentSize} bytes, expected ${size}`);
    return frame;
  }
  const wide = size > 0xffffffff;
  const field = Buffer.alloc(wide ? 8 : 4);
  if (wide) field.writeBigUInt64LE(BigInt(size));
  else field.writeUInt32LE(size);
  const head = Buffer.from(frame.subarray(0, h.fcsOffset));
  head[4] = (head[4]! & 0x3f) | ((wide ? 3 : 2) << 6);
  return Buffer.concat([head, field, frame.subarray(h.fcsOffset)]);
}

function encoder(level: number): Encoder {
  if (!Number.isInteger(level) || level < -7 || level > 22)
    throw new RangeError(`zstd level must be an integer in [-7, 22] (got ${level})`);
  let enc = encoders.get(level);
  if (!enc) {
    enc = new Encoder(level);
    encoders.set(level, enc);
  }
  return enc;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** One zstd frame holding `data`, with its content size in the header. */
export function zstdCompress(data: Uint8Array, level = DEFAULT_ZSTD_LEVEL): Buffer {
  return withContentSize(encoder(level).encodeSync(asBuffer(data)), data.byteLength);
}

/** zstdCompress on libuv's thread pool (`data` must stay unchanged until it resolves). */
export async function zstdCompressAsync(
  data: Uint8Array,
  level = DEFAULT_ZSTD_LEVEL,
): Promise<Buffer> {
  return withContentSize(await encoder(level).encode(asBuffer(data)), data.byteLength);
}

function checkDeclared(frame: Uint8Array, expectedSize: number): void {
  const declared = frameContentSize(frame);
  if (declared !== null && declared !== expectedSize)
    throw new Error(`payload declares ${declared} bytes, expected ${expectedSize}`);
}

function checkSize(out: Buffer, expectedSize: number): Buffer {
  if (out.length !== expectedSize)
    throw new Error(`payload decompresses to ${out.length} bytes, expected ${expectedSize}`);
  return out;
}

const notAFrame = (err: unknown) =>
  new Error(`payload is not a valid zstd frame (${(err as Error).message})`);

/**
 * Decompresses one payload that must hold exactly `expectedSize` bytes. A declared content
 * size is checked before decoding, so a corrupt header cannot make us inflate gigabytes.
 */
export function zstdDecompress(frame: Uint8Array, expectedSize: number): Buffer {
  checkDeclared(frame, expectedSize);
  decoder ??= new Decoder();
  try {
    return checkSize(decoder.decodeSync(asBuffer(frame)), expectedSize);
  } catch (err) {
    throw (err as Error).message.startsWith('payload decompresses') ? err : notAFrame(err);
  }
}

/** zstdDecompress on libuv's thread pool. */
export async function zstdDecompressAsync(
  frame: Uint8Array,
  expectedSize: number,
): Promise<Buffer> {
  checkDeclared(frame, expectedSize);
  decoder ??= new Decoder();
  let out: Buffer;
  try {
    out = await decoder.decode(asBuffer(frame));
  } catch (err) {
    throw notAFrame(err);
  }
  return checkSize(out, expectedSize);
}

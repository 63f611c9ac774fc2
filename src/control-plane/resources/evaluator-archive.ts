/**
 * Reads an evaluator's uploaded source archive (the `.tar.gz` `ep upload` makes: the project
 * folder, `.gitignore`d and build files left out) into a list of plain files.
 *
 * Only what the sandbox can use safely gets through: regular files and folders, under one
 * project folder that is stripped (paths become relative to it, where requirements.txt sits).
 * Links, devices, absolute or `..` paths, and archives that expand past the limits are
 * refused with a message naming the entry, never half-read.
 */
import { gunzipSync } from 'node:zlib';
import { evaluatorFileSchema } from '../../evaluators/index.js';

/** Most bytes an archive may expand to, and most files it may hold (the stored shape's cap). */
export const MAX_EXTRACTED_BYTES = 256 << 20;
export const MAX_ARCHIVE_FILES = 2000;

export interface ArchiveFile {
  path: string;
  bytes: Buffer;
}

export class ArchiveError extends Error {
  override name = 'ArchiveError';
}

const BLOCK = 512;

function text(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? field.length : end).toString('utf8');
}

function octal(block: Buffer, start: number, length: number, what: string): number {
  if ((block[start]! & 0x80) !== 0)
    throw new ArchiveError(`the archive's ${what} uses the base-256 form (a file over 8 GiB)`);
  const digits = text(block, start, length).trim();
  if (digits === '') return 0;
  if (!/^[0-7]+$/.test(digits))
    throw new ArchiveError(`the archive is corrupt (${what} '${digits}')`);
  return Number.parseInt(digits, 8);
}

/** The header's checksum: its bytes summed with the checksum field read as spaces. */
function checksumOk(block: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum === octal(block, 148, 8, 'header checksum');
}

/** PAX extended header records: `<len> <key>=<value>\n`. */
function paxRecords(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const length = Number.parseInt(data.subarray(at, space).toString('ascii'), 10);
    if (space < 0 || !(length > 0) || at + length > data.length)
      throw new ArchiveError('the archive is corrupt (a PAX header record)');
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return out;
}

const KINDS: Record<string, string> = {
  '1': 'a hard link',
  '2': 'a symbolic link',
  '3': 'a character device',
  '4': 'a block device',
  '6': 'a FIFO',
  '7': 'a contiguous file',
};

/** Every regular file in the tar stream, in archive order, with its raw path. */
function entries(tar: Buffer): ArchiveFile[] {
  const files: ArchiveFile[] = [];
  let longName: string | undefined;
  let pax = new Map<string, string>();
  for (let at = 0; at + BLOCK <= tar.length; ) {
    const header = tar.subarray(at, at + BLOCK);
    if (header.every((b) => b === 0)) break;
    if (!checksumOk(header)) throw new ArchiveError('the archive is corrupt (a header checksum)');
    const type = String.fromCharCode(header[156]!) || '0';
    const size = Number(pax.get('size') ?? octal(header, 124, 12, 'file size'));
    const prefix = text(header, 257, 6).startsWith('ustar') ? text(header, 345, 155) : '';
    const name =
      pax.get('path') ??
      longName ??
      (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
    const dataStart = at + BLOCK;
    const data = tar.subarray(dataStart, dataStart + size);
    if (data.length < size) throw new ArchiveError(`the archive is truncated inside ${name}`);
    at = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x') {
      pax = paxRecords(data);
      continue;
    }
    if (type === 'L') {
      longName = text(data, 0, data.length);
      continue;
    }
    longName = undefined;
    pax = new Map();
    if (type === 'g' || type === '5') continue;
    if (type !== '0')
      throw new ArchiveError(
        `archive entry ${name} is ${KINDS[type] ?? `of type '${type}'`}: only plain files and folders are accepted`,
      );
    files.push({ path: name, bytes: Buffer.from(data) });
    if (files.length > MAX_ARCHIVE_FILES)
      throw new ArchiveError(`the archive holds more than ${MAX_ARCHIVE_FILES} files`);
  }
  return files;
}

/** `./a/b` → `a/b`; the project folder every entry starts with is removed. */
function stripProjectFolder(files: ArchiveFile[]): ArchiveFile[] {
  const cleaned = files.map((f) => ({ ...f, path: f.path.replace(/^(\.\/)+/, '') }));
  const first = cleaned.map((f) => f.path.split('/')[0]);
  const folder = first[0];
  const shared =
    folder !== undefined && cleaned.every((f, i) => first[i] === folder && f.path.includes('/'));
  return shared ? cleaned.map((f) => ({ ...f, path: f.path.slice(folder.length + 1) })) : cleaned;
}

/** The archive's files, paths relative to the project folder; ArchiveError when unusable. */
export function readEvaluatorArchive(gz: Buffer): ArchiveFile[] {
  let tar: Buffer;
  try {
    tar = gunzipSync(gz, { maxOutputLength: MAX_EXTRACTED_BYTES });
  } catch (error) {
    if (error instanceof RangeError || (error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE')
      throw new ArchiveError(`the archive expands to more than ${MAX_EXTRACTED_BYTES} bytes`);
    throw new ArchiveError(
      `the upload is not a gzip-compressed tar archive (${(error as Error).message})`,
    );
  }
  const files = stripProjectFolder(entries(tar));
  if (files.length === 0) throw new ArchiveError('the archive holds no files');
  const seen = new Set<string>();
  for (const f of files) {
    const ok = evaluatorFileSchema.shape.path.safeParse(f.path);
    if (!ok.success)
      throw new ArchiveError(`archive entry '${f.path}' ${ok.error.issues[0]!.message}`);
    if (seen.has(f.path)) throw new ArchiveError(`archive entry ${f.path} appears twice`);
    seen.add(f.path);
  }
  return files;
}

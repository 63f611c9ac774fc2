// Worker threads that read pieces of a local DCP shard file into shared memory and
// CRC-32 them, so a large load runs on several cores: the calling thread reads the first
// part of the file and the workers the rest, each checksumming its pieces right after it
// read them (while they are still in that core's cache), and the caller joins the CRCs with
// crc32Combine. Workers are started on first use, kept for later loads, and never keep the
// process alive (unref).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/** One piece of a file: `len` bytes at file offset `at`, into `target` (null: checksum only). */
export interface FilePiece {
  at: number;
  len: number;
  target: Uint8Array | null;
}

/**
 * The worker's code: plain CommonJS, so it runs the same under tsx, vitest and compiled
 * output. A request names an open file descriptor of the caller (descriptors are per process)
 * and the shared memory its targets live in; each piece is [file offset, length, offset in
 * memory or -1 for a gap read only to be checksummed].
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { readSync } = require('node:fs');
const { crc32 } = require('node:zlib');
let scratch = null;
parentPort.on('message', ({ fd, memory, pieces }) => {
  try {
    const shared = new Uint8Array(memory);
    let value = 0;
    for (let i = 0; i < pieces.length; i += 3) {
      const at = pieces[i], len = pieces[i + 1], offset = pieces[i + 2];
      if (offset < 0 && (!scratch || scratch.length < len)) scratch = new Uint8Array(len);
      const bytes = offset >= 0 ? shared.subarray(offset, offset + len) : scratch.subarray(0, len);
      for (let done = 0; done < len; ) {
        const n = readSync(fd, bytes, done, len - done, at + done);
        if (n === 0) throw new Error('unexpected end of file at byte ' + (at + done));
        done += n;
      }
      value = crc32(bytes, value);
    }
    parentPort.postMessage({ value });
  } catch (error) {
    parentPort.postMessage({ error: error instanceof Error ? error.message : String(error) });
  }
});
`;

/** At most this many workers (memory bandwidth, not cores, limits a read beyond that). */
const MAX_WORKERS = 3;

const idle: Worker[] = [];
let started = 0;

/** How many workers a load may use: one fewer than the cores, at most MAX_WORKERS. */
export function readWorkerLimit(): number {
  return Math.max(0, Math.min(MAX_WORKERS, availableParallelism() - 1));
}

/** Up to `want` workers, idle ones first; fewer when the limit is reached. */
function acquire(want: number): Worker[] {
  const got = idle.splice(0, want);
  while (got.length < want && started < readWorkerLimit()) {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    worker.on('error', () => {}); // a failed request rejects; the worker is then dropped
    started++;
    got.push(worker);
  }
  return got;
}

function retire(worker: Worker): void {
  started--;
  void worker.terminate();
}

/**
 * Reads `pieces` (whose targets all lie in `memory`) from descriptor `fd` on a worker and
 * resolves to their raw CRC-32 (as from 0), or rejects with the worker's error.
 */
function runOn(
  worker: Worker,
  fd: number,
  memory: SharedArrayBuffer,
  pieces: readonly FilePiece[],
): Promise<number> {
  const packed = new Float64Array(pieces.length * 3);
  pieces.forEach((p, i) => {
    packed.set([p.at, p.len, p.target ? p.target.byteOffset : -1], i * 3);
  });
  return new Promise<number>((resolve, reject) => {
    const onExit = (code: number) => {
      worker.off('message', onMessage);
      started--;
      reject(new Error(`read worker exited with code ${code}`));
    };
    const onMessage = (reply: { value?: number; error?: string }) => {
      worker.off('exit', onExit);
      if (reply.error === undefined) {
        idle.push(worker);
        resolve(reply.value ?? 0);
      } else {
        retire(worker);
        reject(new Error(reply.error));
      }
    };
    worker.once('message', onMessage);
    worker.once('exit', onExit);
    worker.postMessage({ fd, memory, pieces: packed });
  });
}

/** The shared memory every target of `pieces` lies in, or null when there is none such. */
export function sharedMemoryOf(pieces: readonly FilePiece[]): SharedArrayBuffer | null {
  let memory: SharedArrayBuffer | null = null;
  for (const p of pieces) {
    if (!p.target) continue;
    const buffer = p.target.buffer;
    if (!(buffer instanceof SharedArrayBuffer) || (memory && buffer !== memory)) return null;
    memory = buffer;
  }
  return memory;
}

/**
 * Splits `pieces` (in file order) into the caller's part and up to `workers.length` more
 * parts of about equal bytes, and starts the workers on theirs. Returns the caller's part
 * and, in file order, each worker part's promised CRC and byte length.
 */
export function startWorkerReads(
  fd: number,
  memory: SharedArrayBuffer,
  pieces: readonly FilePiece[],
  opts: { maxWorkers: number; minPartBytes: number },
): { own: FilePiece[]; parts: { crc: Promise<number>; bytes: number }[] } {
  const total = pieces.reduce((a, p) => a + p.len, 0);
  const workers = Math.min(opts.maxWorkers, readWorkerLimit());
  const parts = Math.min(1 + workers, Math.floor(total / opts.minPartBytes));
  const got = parts > 1 ? acquire(parts - 1) : [];
  const groups = splitByBytes(pieces, got.length + 1, total);
  return {
    own: groups[0]!,
    parts: got.map((w, i) => {
      const group = groups[i + 1]!;
      return { crc: runOn(w, fd, memory, group), bytes: group.reduce((a, p) => a + p.len, 0) };
    }),
  };
}

/** `count` runs of consecutive pieces with about total/count bytes each. */
function splitByBytes(pieces: readonly FilePiece[], count: number, total: number): FilePiece[][] {
  const groups: FilePiece[][] = Array.from({ length: count }, () => []);
  let seen = 0;
  for (const p of pieces) {
    const g = Math.min(count - 1, Math.floor((seen * count) / total));
    groups[g]!.push(p);
    seen += p.len;
  }
  return groups;
}

// Synchronous file I/O in small pieces on the main thread: the file:// fast paths of
// checkpoints (staging writes in FileObjectStore, DCP shard reads).
//
// Why not the thread pool: checkpoint bytes are also checksummed, and that runs on the main
// thread (the engine's tensor memory cannot be handed to another thread). When the main thread
// copies a piece itself, with write() into the page cache or read() out of it, and then
// checksums it, the piece is still in this core's cache, so the bytes cross the memory bus
// once instead of twice (CRC-32 runs at ~6 GB/s over cached bytes, ~2 GB/s over cold ones on
// the 2-core development machine). A pool thread on the other core would leave the checksum
// to re-read everything from memory. The event loop gets a turn every IO_YIELD_BYTES, so
// servers in the same process (a trainer pod's gRPC health checks) stay responsive.

import { readSync, writeSync } from 'node:fs';

/** Bytes copied per write()/read(): a piece fits the core's L2 cache with room to spare. */
export const IO_PIECE_BYTES = 256 << 10;

/** Bytes copied between two turns of the event loop (a few milliseconds of work). */
export const IO_YIELD_BYTES = 8 << 20;

/** Lets timers and I/O callbacks run before the next slice of synchronous work. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Counts bytes of synchronous I/O and yields to the event loop every IO_YIELD_BYTES. */
export class YieldBudget {
  private since = 0;

  async spent(bytes: number): Promise<void> {
    this.since += bytes;
    if (this.since < IO_YIELD_BYTES) return;
    this.since = 0;
    await yieldToEventLoop();
  }
}

/** Writes all of `bytes` at `position` (write() may write less than asked). */
export function writeFullySync(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.byteLength; )
    done += writeSync(fd, bytes, done, bytes.byteLength - done, position + done);
}

/** Fills `bytes` from `position`; a file that ends first is an error naming the byte. */
export function readFullySync(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.byteLength; ) {
    const n = readSync(fd, bytes, done, bytes.byteLength - done, position + done);
    if (n === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

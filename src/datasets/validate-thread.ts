/**
 * The worker-thread side of `validateOffThread` (validate-off-thread.ts): receives the file's
 * bytes in chunks, then validates them here, so a large dataset never blocks the thread that
 * serves requests. Messages in: `{chunk}` (transferred) ... `{end}`; out: one result message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { detectKind } from './detect-kind.js';
import { DatasetValidationError } from './errors.js';
import { type DatasetKind, type ValidateOptions, validateDataset } from './validate.js';

const port = parentPort;
if (!port) throw new Error('validate-thread.ts runs as a worker thread');
const { kind, options } = workerData as { kind: DatasetKind | null; options: ValidateOptions };
const chunks: Uint8Array[] = [];
let size = 0;

port.on('message', (message: { chunk?: Uint8Array; end?: true }) => {
  if (message.chunk) {
    chunks.push(message.chunk);
    size += message.chunk.byteLength;
    return;
  }
  const bytes = Buffer.concat(chunks, size);
  chunks.length = 0;
  try {
    const k = kind ?? detectKind(bytes);
    const summary = validateDataset(k, bytes, options);
    port.postMessage({ ok: { kind: k, summary, sizeBytes: size } });
  } catch (error) {
    if (error instanceof DatasetValidationError) port.postMessage({ invalid: error.issues });
    else port.postMessage({ failed: error instanceof Error ? error.message : String(error) });
  }
});

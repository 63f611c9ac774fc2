/**
 * Dataset validation off the calling thread: the file streams, chunk by chunk, to a worker
 * thread (validate-thread.ts) that holds it and validates it, so an upload of any size never
 * blocks the event loop that answers other requests (a 114 MB upload used to stall /healthz
 * for 12 s) and the caller never holds the whole file. At most `MAX_CONCURRENT` validations
 * run at once (each holds its file in memory); more wait their turn.
 */
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { type DatasetIssue, DatasetValidationError } from './errors.js';
import type { DatasetKind, DatasetSummary, ValidateOptions } from './validate.js';

export interface OffThreadResult {
  kind: DatasetKind;
  summary: DatasetSummary;
  sizeBytes: number;
}

const MAX_CONCURRENT = 2;
let running = 0;
const waiting: (() => void)[] = [];

/** Files handed whole to a worker that is validating them now (the CPU-bound phase). */
let validating = 0;

/**
 * Validations in their CPU-bound phase (the file is on the worker, the answer not yet back):
 * a gauge, and what a test watches to check the event loop stays free meanwhile.
 */
export function validationsRunning(): number {
  return validating;
}

async function slot(): Promise<() => void> {
  if (running >= MAX_CONCURRENT) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  return () => {
    running--;
    waiting.shift()?.();
  };
}

/** The worker's entry: the .ts source under tsx (tests, `npm run`), the .js file when built. */
function startWorker(kind: DatasetKind | null, options: ValidateOptions): Worker {
  const source = import.meta.url.endsWith('.ts');
  const entry = new URL(source ? './validate-thread.ts' : './validate-thread.js', import.meta.url);
  return new Worker(entry, {
    workerData: { kind, options },
    ...(source ? { execArgv: ['--import', import.meta.resolve('tsx')] } : {}),
  });
}

/**
 * Validates the JSONL that `source` yields as `kind` (null: detected from the first line).
 * Resolves with the summary; rejects with the DatasetValidationError (issues with line
 * numbers) for bad data, or the stream's own error.
 */
export async function validateOffThread(
  source: Readable | AsyncIterable<Uint8Array>,
  kind: DatasetKind | null,
  options: ValidateOptions = {},
): Promise<OffThreadResult> {
  const release = await slot();
  const worker = startWorker(kind, options);
  try {
    const result = new Promise<OffThreadResult>((resolve, reject) => {
      worker.once(
        'message',
        (m: { ok?: OffThreadResult; invalid?: DatasetIssue[]; failed?: string }) => {
          if (m.ok) resolve(m.ok);
          else if (m.invalid) reject(new DatasetValidationError(m.invalid));
          else reject(new Error(`dataset validation failed unexpectedly: ${m.failed}`));
        },
      );
      worker.once('error', reject);
      worker.once('exit', (code) =>
        reject(new Error(`the dataset validation thread exited (code ${code}) before answering`)),
      );
    });
    // Settled early if the thread dies while the file is still streaming to it.
    result.catch(() => undefined);
    for await (const piece of source) {
      const chunk = piece instanceof Uint8Array ? piece : Buffer.from(piece as string);
      // A copy the worker owns (the stream's buffer may be a slice of a pooled one).
      const owned = new Uint8Array(chunk);
      worker.postMessage({ chunk: owned }, [owned.buffer]);
    }
    worker.postMessage({ end: true });
    validating++;
    try {
      return await result;
    } finally {
      validating--;
    }
  } finally {
    await worker.terminate();
    release();
  }
}

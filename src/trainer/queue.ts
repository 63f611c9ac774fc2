/**
 * The ordered operation queue of one model. Operations carry a seq_id (1, 2, 3, ... after
 * CreateModel) and run one at a time in seq_id order, whatever order they arrive in:
 *
 * - an operation whose predecessors have not all arrived waits (up to `gapTimeoutMs`, then it
 *   fails with `seq_gap` without consuming its seq_id, so a resend can still fill the gap);
 * - a repeat of a seq_id that is waiting, running or recently done returns that operation's
 *   promise — the same result or the same error — without running it again (idempotent
 *   retries); a repeat with a different kind of operation is a `seq_conflict`;
 * - a seq_id older than the remembered results is `seq_expired`;
 * - an operation that fails settles with its error and the queue moves on: a failure never
 *   blocks the operations after it.
 */
import { TrainerError } from './errors.js';

export interface OpQueueOptions {
  /** For messages: `model m-1234`. */
  name: string;
  /** How long an operation waits for a missing predecessor (default 120 s). */
  gapTimeoutMs?: number;
  /** How many settled results are kept for duplicate submissions (default 256). */
  resultCacheSize?: number;
  /** The first seq_id (default 1). */
  firstSeqId?: number;
}

type EntryState = 'waiting' | 'running' | 'settled';

interface Entry {
  seqId: number;
  kind: string;
  state: EntryState;
  run: () => unknown;
  promise: Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  timer: NodeJS.Timeout | undefined;
}

export class OpQueue {
  private readonly name: string;
  private readonly gapTimeoutMs: number;
  private readonly cacheSize: number;
  private next: number;
  private readonly entries = new Map<number, Entry>();
  private readonly settledOrder: number[] = [];
  private running: Entry | null = null;
  private closedWith: TrainerError | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(options: OpQueueOptions) {
    this.name = options.name;
    this.gapTimeoutMs = options.gapTimeoutMs ?? 120_000;
    this.cacheSize = options.resultCacheSize ?? 256;
    this.next = options.firstSeqId ?? 1;
  }

  /** The seq_id the queue runs next. */
  get nextSeqId(): number {
    return this.next;
  }

  /** Whether an operation is running now. */
  get busy(): boolean {
    return this.running !== null;
  }

  /** Operations that arrived ahead of a missing predecessor. */
  get waitingCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.state === 'waiting') n++;
    return n;
  }

  /**
   * Runs `run` as operation `seqId` of kind `kind` once every earlier seq_id has run, and
   * returns its result; see the class comment for repeats and gaps.
   */
  submit<T>(seqId: number, kind: string, run: () => T | Promise<T>): Promise<T> {
    if (!Number.isInteger(seqId) || seqId < 1) {
      return Promise.reject(
        new TrainerError(
          'invalid_argument',
          `${kind}: seq_id must be a positive integer (1 for the first operation after create_model), got ${seqId}`,
          { field: 'seq_id' },
        ),
      );
    }
    const existing = this.entries.get(seqId);
    if (existing) {
      if (existing.kind !== kind) {
        return Promise.reject(
          new TrainerError(
            'seq_conflict',
            `${this.name}: seq_id ${seqId} was already used by a ${existing.kind} operation, not ${kind}; use a new seq_id (next is ${this.next})`,
            { field: 'seq_id' },
          ),
        );
      }
      return existing.promise as Promise<T>;
    }
    if (seqId < this.next) {
      return Promise.reject(
        new TrainerError(
          'seq_expired',
          `${this.name}: seq_id ${seqId} already ran and its result is no longer kept; the next seq_id is ${this.next}`,
          { field: 'seq_id' },
        ),
      );
    }
    if (this.closedWith) return Promise.reject(this.closedWith);
    let resolve!: (value: unknown) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Repeats share this promise; a rejection is handled by whoever awaits it.
    promise.catch(() => {});
    const entry: Entry = {
      seqId,
      kind,
      state: 'waiting',
      run,
      promise,
      resolve,
      reject,
      timer: undefined,
    };
    this.entries.set(seqId, entry);
    if (seqId > this.next) {
      entry.timer = setTimeout(() => this.expireGap(entry), this.gapTimeoutMs);
      entry.timer.unref();
    }
    this.pump();
    return promise as Promise<T>;
  }

  private expireGap(entry: Entry): void {
    if (entry.state !== 'waiting') return;
    this.entries.delete(entry.seqId);
    entry.reject(
      new TrainerError(
        'seq_gap',
        `${this.name}: ${entry.kind} seq_id ${entry.seqId} waited ${this.gapTimeoutMs} ms for seq_id ${this.next}, which never arrived; resend the missing operations (from ${this.next})`,
        { field: 'seq_id' },
      ),
    );
  }

  private pump(): void {
    if (this.running) return;
    const entry = this.entries.get(this.next);
    if (entry?.state !== 'waiting') {
      this.notifyIdle();
      return;
    }
    if (entry.timer) clearTimeout(entry.timer);
    entry.state = 'running';
    this.running = entry;
    const finish = (ok: boolean, value: unknown) => {
      entry.state = 'settled';
      if (ok) entry.resolve(value);
      else entry.reject(value);
      this.running = null;
      this.next = entry.seqId + 1;
      this.settledOrder.push(entry.seqId);
      while (this.settledOrder.length > this.cacheSize) {
        this.entries.delete(this.settledOrder.shift()!);
      }
      this.pump();
    };
    let result: unknown;
    try {
      result = entry.run();
    } catch (error) {
      finish(false, error);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (value) => finish(true, value),
        (error: unknown) => finish(false, error),
      );
    } else {
      finish(true, result);
    }
  }

  private notifyIdle(): void {
    if (this.running) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once no operation is running. */
  idle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Refuses new operations with `error` and fails every waiting one with it; the running
   * operation (if any) finishes.
   */
  close(error: TrainerError): void {
    this.closedWith = error;
    for (const entry of [...this.entries.values()]) {
      if (entry.state !== 'waiting') continue;
      if (entry.timer) clearTimeout(entry.timer);
      this.entries.delete(entry.seqId);
      entry.reject(error);
    }
  }
}

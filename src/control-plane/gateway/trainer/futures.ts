/**
 * The futures of the Tinker wire: an op answers `{request_id}` at once and its result is
 * fetched with `retrieve_future` long-polls. A future holds the promise of the trainer call
 * it stands for; a poll waits for it up to `pollWaitMs` and otherwise says "try again".
 *
 * Futures are never dropped while a client may still poll them: a settled one is kept until
 * `retainMs` after it was first handed out (a retried poll whose answer was lost in transit
 * finds it again), and an unread one for `unreadRetainMs`. Each future belongs to one
 * account, so a request id of another account is unknown, like a missing one.
 *
 * Futures live in this process only: the trainer call behind one is a gRPC call of this
 * process, gone with it. A request id names the table's incarnation, so after a control-plane
 * restart a poll of an earlier id is told "lost" (the Tinker wire's 410, "promise lost"), on
 * which the client resubmits the original op; the pod runs each (model, seq_id) once and gives
 * a resubmission the first run's result, so the training call completes as if nothing had
 * happened. An id this incarnation never issued stays unknown (404).
 */
import { randomBytes } from 'node:crypto';

export type FutureOutcome =
  | {
      ok: true;
      value: Record<string, unknown>;
      /** The same result in protobuf, for clients that accept it (forward ops). */
      protobuf?: Uint8Array;
    }
  | { ok: false; message: string; category: 'user' | 'server' | 'unknown' };

interface Entry {
  account: string;
  outcome?: FutureOutcome;
  settled: Promise<void>;
  settledAt?: number;
  readAt?: number;
}

export interface FutureTableOptions {
  /** Longest a retrieve_future holds the request (the client allows 45 s). */
  pollWaitMs?: number;
  retainMs?: number;
  unreadRetainMs?: number;
}

export type Poll =
  | { state: 'unknown' }
  /** Issued by an earlier incarnation of the control plane (before a restart). */
  | { state: 'lost' }
  | { state: 'pending' }
  | { state: 'done'; outcome: FutureOutcome };

const REQUEST_ID = /^req-([0-9a-f]{8})-[0-9a-f]{24}$/;

export class FutureTable {
  /** This process's table: a fresh value per start, carried in every request id. */
  readonly incarnation = randomBytes(4).toString('hex');
  private readonly entries = new Map<string, Entry>();
  /** x-idempotency-key → request id, so a retried op is one future. */
  private readonly byIdempotencyKey = new Map<string, string>();
  private readonly pollWaitMs: number;
  private readonly retainMs: number;
  private readonly unreadRetainMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(opts: FutureTableOptions = {}) {
    this.pollWaitMs = opts.pollWaitMs ?? 25_000;
    this.retainMs = opts.retainMs ?? 10 * 60_000;
    this.unreadRetainMs = opts.unreadRetainMs ?? 6 * 3600_000;
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  /**
   * Registers `work` as a future of `account`; returns its request id. With an idempotency
   * key that was seen before, the earlier future's id (the work is not started again).
   */
  start(
    account: string,
    idempotencyKey: string | undefined,
    work: () => Promise<FutureOutcome>,
  ): string {
    const dedupe = idempotencyKey ? `${account}\u0000${idempotencyKey}` : undefined;
    const seen = dedupe ? this.byIdempotencyKey.get(dedupe) : undefined;
    if (seen && this.entries.has(seen)) return seen;
    const id = `req-${this.incarnation}-${randomBytes(12).toString('hex')}`;
    const entry: Entry = { account, settled: Promise.resolve() };
    entry.settled = work()
      .catch(
        (err): FutureOutcome => ({
          ok: false,
          message: `internal error: ${(err as Error)?.message ?? String(err)}`,
          category: 'server',
        }),
      )
      .then((outcome) => {
        entry.outcome = outcome;
        entry.settledAt = Date.now();
      });
    this.entries.set(id, entry);
    if (dedupe) this.byIdempotencyKey.set(dedupe, id);
    return id;
  }

  /** Waits up to the poll window for the future to settle. */
  async poll(account: string, requestId: string, waitMs = this.pollWaitMs): Promise<Poll> {
    const entry = this.entries.get(requestId);
    if (!entry || entry.account !== account) {
      const issuer = REQUEST_ID.exec(requestId)?.[1];
      return issuer !== undefined && issuer !== this.incarnation
        ? { state: 'lost' }
        : { state: 'unknown' };
    }
    if (!entry.outcome) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        entry.settled,
        new Promise<void>((r) => {
          timer = setTimeout(r, waitMs);
        }),
      ]);
      clearTimeout(timer);
    }
    if (!entry.outcome) return { state: 'pending' };
    entry.readAt ??= Date.now();
    return { state: 'done', outcome: entry.outcome };
  }

  private sweep(now = Date.now()): void {
    for (const [id, e] of this.entries) {
      const expired =
        (e.readAt !== undefined && now - e.readAt > this.retainMs) ||
        (e.settledAt !== undefined && now - e.settledAt > this.unreadRetainMs);
      if (expired) this.entries.delete(id);
    }
    for (const [key, id] of this.byIdempotencyKey)
      if (!this.entries.has(id)) this.byIdempotencyKey.delete(key);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}

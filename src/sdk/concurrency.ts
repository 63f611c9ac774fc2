// Concurrency controllers for deployment sampling: a fixed semaphore, and AIMD on the
// server's prefill queue duration (grow while the queue stays under target, halve above it).

export interface RequestMetrics {
  /** Seconds the request waited before prefill (server_timing.prefill_queue_duration). */
  prefillQueueDuration: number;
  promptTokens: number;
  cachedTokens: number;
}

export interface ConcurrencyController {
  acquire(): Promise<void>;
  release(): void;
  record(m: RequestMetrics): void;
}

class Semaphore {
  private active = 0;
  private readonly waiters: (() => void)[] = [];
  constructor(public limit: number) {}
  get inFlight(): number {
    return this.active;
  }
  async acquire(): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return;
    }
    await new Promise<void>((r) => this.waiters.push(r));
  }
  release(): void {
    const next = this.active <= this.limit ? this.waiters.shift() : undefined;
    if (next) next();
    else this.active--;
  }
  /** After raising the limit, admit waiters up to it. */
  pump(): void {
    while (this.active < this.limit && this.waiters.length > 0) {
      this.active++;
      this.waiters.shift()?.();
    }
  }
}

export class FixedConcurrencyController implements ConcurrencyController {
  private readonly sem: Semaphore;
  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`concurrency must be a positive integer (got ${limit})`);
    this.sem = new Semaphore(limit);
  }
  get inFlight(): number {
    return this.sem.inFlight;
  }
  acquire(): Promise<void> {
    return this.sem.acquire();
  }
  release(): void {
    this.sem.release();
  }
  record(): void {}
}

export interface AdaptiveConcurrencyOptions {
  initialWindow?: number;
  minWindow?: number;
  maxWindow?: number;
  /** Target prefill queue duration in seconds. */
  prefillQueueTarget?: number;
}

export interface StepSummary {
  window: number;
  prev_window: number;
  avg_pq: number | null;
  cache_hit_rate: number | null;
  requests: number;
}

export class AdaptiveConcurrencyController implements ConcurrencyController {
  readonly minWindow: number;
  readonly maxWindow: number;
  readonly prefillQueueTarget: number;
  private readonly sem: Semaphore;
  private pq: number[] = [];
  private prompt = 0;
  private cached = 0;

  constructor(opts: AdaptiveConcurrencyOptions = {}) {
    this.minWindow = opts.minWindow ?? 1;
    this.maxWindow = opts.maxWindow ?? 256;
    this.prefillQueueTarget = opts.prefillQueueTarget ?? 0.5;
    const initial = opts.initialWindow ?? 16;
    if (!(this.minWindow >= 1 && this.minWindow <= initial && initial <= this.maxWindow))
      throw new RangeError(
        `need 1 <= minWindow <= initialWindow <= maxWindow (got ${this.minWindow}, ${initial}, ${this.maxWindow})`,
      );
    if (!(this.prefillQueueTarget > 0)) throw new RangeError('prefillQueueTarget must be positive');
    this.sem = new Semaphore(initial);
  }

  get window(): number {
    return this.sem.limit;
  }
  acquire(): Promise<void> {
    return this.sem.acquire();
  }
  release(): void {
    this.sem.release();
  }
  record(m: RequestMetrics): void {
    this.pq.push(m.prefillQueueDuration);
    this.prompt += m.promptTokens;
    this.cached += m.cachedTokens;
  }

  /** Adjusts the window from the step's prefill queue durations and returns a summary. */
  stepCompleted(): StepSummary {
    const prev = this.sem.limit;
    const n = this.pq.length;
    const avg = n > 0 ? this.pq.reduce((a, b) => a + b, 0) / n : null;
    let next = prev;
    if (avg !== null) {
      const target = this.prefillQueueTarget;
      if (avg > target) next = Math.floor(prev / 2);
      else next = prev + Math.max(1, Math.round((prev * (target - avg)) / target));
      next = Math.min(this.maxWindow, Math.max(this.minWindow, next));
    }
    this.sem.limit = next;
    this.sem.pump();
    const summary: StepSummary = {
      window: next,
      prev_window: prev,
      avg_pq: avg,
      cache_hit_rate: this.prompt > 0 ? this.cached / this.prompt : null,
      requests: n,
    };
    this.pq = [];
    this.prompt = 0;
    this.cached = 0;
    return summary;
  }
}

/**
 * The data-parallel collectives of trainer pods, on gloo (native/src/collectives.cpp): a
 * rendezvous store that rank 0's pod serves over TCP, and process groups whose ring
 * all-reduce / reduce-scatter / all-gather move float32 buffers straight between the ranks'
 * processes. The buffers handed in are the engine's own memory (tensorView); native code
 * reads and writes them on a worker thread, nothing is copied through JavaScript.
 *
 * Every reduction is computed in an order fixed by (world size, buffer length) and exactly
 * once, on one rank, then copied: the same ranks give bitwise the same result on every run,
 * and every rank ends with the same bits.
 */
import { nativeEngine } from '../engine/index.js';
import { TrainerError } from './errors.js';

interface NativeCollectiveStore {
  port(): number;
  close(): void;
}

interface NativeCollectiveGroup {
  connect(options: JoinOptions): Promise<void>;
  allReduce(buffers: Float32Array[]): Promise<void>;
  allReduceF64(buffer: Float64Array): Promise<void>;
  reduceScatter(buffers: Float32Array[], shard: Float32Array): Promise<void>;
  allGather(shard: Float32Array, buffers: Float32Array[]): Promise<void>;
  abort(): void;
  close(): void;
}

interface CollectivesModule {
  CollectiveStore: new (host: string, port: number) => NativeCollectiveStore;
  CollectiveGroup: new () => NativeCollectiveGroup;
}

function native(): CollectivesModule {
  return nativeEngine() as unknown as CollectivesModule;
}

/** The key/value store gloo's rendezvous runs through; rank 0's pod serves one. */
export class CollectiveStore {
  private readonly store: NativeCollectiveStore;
  readonly host: string;
  readonly port: number;

  /** Listens on host:port (0 = any free port). */
  constructor(host: string, port = 0) {
    try {
      this.store = new (native().CollectiveStore)(host, port);
    } catch (error) {
      throw new TrainerError(
        'unavailable',
        `collective store: ${(error as Error).message}; check the pod's listen host`,
      );
    }
    this.host = host;
    this.port = this.store.port();
  }

  /** host:port as the other ranks reach it. */
  get address(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  close(): void {
    this.store.close();
  }
}

export interface JoinOptions {
  rank: number;
  world: number;
  storeHost: string;
  storePort: number;
  /** Keys of this group in the store (a fresh prefix per group formation). */
  prefix: string;
  /** The address this rank's gloo endpoint listens on (reachable by the other ranks). */
  host: string;
  timeoutMs: number;
}

/** Splits "host:port" / "[v6]:port". */
export function parseHostPort(address: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  if (!m) {
    throw new TrainerError(
      'invalid_argument',
      `collective store address "${address}" is not host:port`,
    );
  }
  return { host: m[1]!, port: Number(m[2]) };
}

/**
 * Length of every rank's shard of a flat buffer of n values: shard r holds
 * [r·s, min(n, (r+1)·s)), s = ceil(n / world) (the last may be short; it is zero-padded).
 */
export function shardLength(n: number, world: number): number {
  return Math.ceil(n / world);
}

function collectiveError(what: string, error: unknown): TrainerError {
  return new TrainerError(
    'unavailable',
    `${what}: ${(error as Error).message}; a replica is gone or unreachable — reconnect and resume from the last saved state`,
    { cause: error },
  );
}

/** One rank's membership of a group of `world` ranks. One collective at a time. */
export class ProcessGroup {
  private group: NativeCollectiveGroup | undefined;
  private busy: Promise<unknown> = Promise.resolve();

  private constructor(
    group: NativeCollectiveGroup,
    readonly rank: number,
    readonly world: number,
  ) {
    this.group = group;
  }

  /** Joins: resolves once every rank of the group joined under the same prefix. */
  static async join(options: JoinOptions): Promise<ProcessGroup> {
    const g = new (native().CollectiveGroup)();
    try {
      await g.connect(options);
    } catch (error) {
      throw collectiveError(`joining the ${options.world}-rank collective group`, error);
    }
    return new ProcessGroup(g, options.rank, options.world);
  }

  get closed(): boolean {
    return this.group === undefined;
  }

  private run(what: string, op: (g: NativeCollectiveGroup) => Promise<void>): Promise<void> {
    const g = this.group;
    if (!g) return Promise.reject(new TrainerError('unavailable', `${what}: the group is closed`));
    const next = this.busy.then(
      () => op(g),
      () => op(g),
    );
    this.busy = next.catch(() => undefined);
    return next.catch((error: unknown) => {
      // A failed collective leaves the peers out of step: the group is done.
      this.close();
      throw collectiveError(what, error);
    });
  }

  /** In place: every buffer (one flat vector, in order) becomes the sum over ranks. */
  allReduce(buffers: Float32Array[]): Promise<void> {
    return this.run('all-reduce', (g) => g.allReduce(buffers));
  }

  /** In place sum over ranks of a float64 vector (counts: integers stay exact). */
  allReduceF64(buffer: Float64Array): Promise<void> {
    return this.run('all-reduce', (g) => g.allReduceF64(buffer));
  }

  /** This rank's shard (length shardLength(n, world)) of the sum over ranks of the buffers. */
  reduceScatter(buffers: Float32Array[], shard: Float32Array): Promise<void> {
    return this.run('reduce-scatter', (g) => g.reduceScatter(buffers, shard));
  }

  /** Every rank's shard written into the buffers (one flat vector, in order) of every rank. */
  allGather(shard: Float32Array, buffers: Float32Array[]): Promise<void> {
    return this.run('all-gather', (g) => g.allGather(shard, buffers));
  }

  /** Leaves the group; a collective in flight fails on every rank. */
  close(): void {
    const g = this.group;
    this.group = undefined;
    g?.close();
  }
}

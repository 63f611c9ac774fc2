/**
 * The data-parallel collectives of trainer pods, on gloo (native/src/collectives.cpp): a
 * rendezvous store that rank 0's pod serves over TCP, and process groups whose ring
 * all-reduce / reduce-scatter / all-gather move float32 buffers straight between the ranks'
 * processes: over TCP, or through shared memory when every rank of the group is on one host
 * (native/src/collectives_shm.cpp; same bits either way). The buffers handed in are the engine's own memory (tensorView); native code
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
  zeroStep(
    grads: Float32Array[],
    weights: Float32Array[],
    m: Float32Array,
    v: Float32Array,
    hp: ShardedAdamParams,
  ): Promise<number>;
  abort(): void;
  transport(): CollectiveTransport | 'closed';
  close(): void;
}

/** One sharded AdamW step's hyper-parameters (the engine's, plus the step number after it). */
export interface ShardedAdamParams {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Max global grad norm; 0 = off. */
  gradClip: number;
  /** Multiplies the summed gradients (gradient-accumulation normalisation). */
  gradScale: number;
  /** The optimizer step this one makes (1 for the first): the bias corrections use it. */
  step: number;
}

interface CollectivesModule {
  CollectiveStore: new (host: string, port: number) => NativeCollectiveStore;
  CollectiveGroup: new () => NativeCollectiveGroup;
  tcpStreamListen(host: string): { fd: number; port: number };
  tcpStreamDrain(fd: number, bytes: number): Promise<number>;
  tcpStreamSend(host: string, port: number, bytes: number): Promise<number>;
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
  /**
   * Whether this rank allows the same-host shared-memory transport. It is used when every
   * rank allows it and all share one host (kernel boot and network namespace); in a group
   * spanning hosts, for the ring's edges between two such ranks; otherwise the float32
   * collectives go over TCP. Same bits either way. Default true.
   */
  sharedMemory?: boolean;
}

/**
 * What a rank's float32 collectives travel on: `shm` (every rank of the group on this host),
 * `tcp+shm` (a group spanning hosts whose ring has an edge to or from this rank within its
 * host), `tcp`.
 */
export type CollectiveTransport = 'shm' | 'tcp' | 'tcp+shm';

/**
 * A plain TCP stream between two processes, measured natively: the anchor the collectives'
 * throughput is compared with (bench:trainer). listen → the receiver's port; drain/send
 * resolve to seconds.
 */
export const tcpStream = {
  listen: (host: string) => native().tcpStreamListen(host),
  drain: (fd: number, bytes: number) => native().tcpStreamDrain(fd, bytes),
  send: (host: string, port: number, bytes: number) => native().tcpStreamSend(host, port, bytes),
};

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
  /** What the float32 collectives travel on, decided when the group formed. */
  readonly transport: CollectiveTransport;

  private constructor(
    group: NativeCollectiveGroup,
    readonly rank: number,
    readonly world: number,
  ) {
    this.group = group;
    const t = group.transport();
    this.transport = t === 'closed' ? 'tcp' : t;
  }

  /** Joins: resolves once every rank of the group joined under the same prefix. */
  static async join(options: JoinOptions): Promise<ProcessGroup> {
    const g = new (native().CollectiveGroup)();
    try {
      await g.connect({ ...options, sharedMemory: options.sharedMemory ?? true });
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
      // A non-finite gradient norm fails the step on every rank alike (all see the same
      // norm): the group stays usable and the step can be retried.
      if (/not finite/.test((error as Error).message)) {
        throw new TrainerError(
          'non_finite_gradients',
          `optim_step: ${(error as Error).message}; lower the learning rate or check the loss for overflow`,
          { cause: error },
        );
      }
      // Any other failure leaves the peers out of step: the group is done.
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

  /**
   * Every rank's bytes (a few kB: where a save goes, what each rank wrote), on every rank, in
   * rank order: the lengths summed in each rank's slot, then the bytes (as exact float32
   * values, padded to the longest) all-gathered.
   */
  async allGatherBytes(mine: Uint8Array): Promise<Uint8Array[]> {
    const lengths = new Float64Array(this.world);
    lengths[this.rank] = mine.length;
    await this.allReduceF64(lengths);
    const longest = Math.max(...lengths);
    const all = new Float32Array(longest * this.world);
    if (longest > 0) {
      const shard = new Float32Array(longest);
      shard.set(mine);
      await this.allGather(shard, [all]);
    }
    return Array.from(lengths, (n, r) =>
      Uint8Array.from(all.subarray(r * longest, r * longest + n)),
    );
  }

  /**
   * One ZeRO-1 AdamW step: the gradients (engine buffers) are reduce-scattered, this rank
   * updates its shard of the weights with its shard of the moments `m`/`v` (length
   * shardLength(n, world), kept by the caller), the weights are all-gathered into every
   * rank's buffers and the gradients zeroed. Resolves to the global pre-clip grad norm.
   */
  async zeroStep(
    grads: Float32Array[],
    weights: Float32Array[],
    m: Float32Array,
    v: Float32Array,
    hp: ShardedAdamParams,
  ): Promise<number> {
    let norm = 0;
    await this.run('sharded optimizer step', async (g) => {
      norm = await g.zeroStep(grads, weights, m, v, hp);
    });
    return norm;
  }

  /** Leaves the group; a collective in flight fails on every rank. */
  close(): void {
    const g = this.group;
    this.group = undefined;
    g?.close();
  }
}

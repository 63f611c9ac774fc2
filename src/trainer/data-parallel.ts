/**
 * Data parallelism: `world` trainer pods ("replicas", ranks 0..world-1) serve one training
 * run. The algorithm, step by step:
 *
 * 1. Sharding (client side, `shardRanges`): every batch of n datums is cut into `world`
 *    contiguous blocks; rank r gets datums [floor(r·n/world), floor((r+1)·n/world)). The split
 *    depends only on (n, world), never on timing. A rank whose block is empty is sent nothing.
 *    Built-in losses are sums over datums, so per-shard losses add up to the batch's; custom
 *    losses run on the client over the whole batch's logprobs and only the d(loss)/d(logprob)
 *    of each shard is sent to its rank.
 * 2. Each rank back-propagates its shard into its own gradient buffers and counts its loss
 *    tokens / sequences (GradAccumulationCounter), as a single pod would.
 * 3. optim_step carries `data_parallel {rank, world_size, root_address, root_model_id}` to
 *    every rank. The ranks form a gloo process group (collectives.ts) once and keep it:
 *    rank 0's pod serves the rendezvous store; a rank > 0 asks rank 0 where it is and under
 *    which prefix to join (JoinCollective RPC). Then, at every step, the ranks all-reduce
 *    their counts (float64, exact) and their gradients — the engine's own gradient buffers,
 *    every trainable tensor in engine order as one flat vector — with a ring all-reduce
 *    (reduce-scatter, then all-gather) straight between the pods: over gloo's TCP transport,
 *    or through shared memory when every rank shares one host (unless the run sets
 *    tcp_collectives). The ring's summation order is fixed by the world size, the same on
 *    either transport, and each sum is computed once and then copied, so every replica holds
 *    bitwise the same gradients and a rerun is bitwise identical.
 * 4. Each rank computes the normalisation from the GLOBAL counts (1 / tokens or 1 / sequences
 *    over every rank's shards) and runs AdamW. Identical weights + identical gradients +
 *    identical hyper-parameters ⇒ identical updates: the replicas stay bitwise identical.
 *    Against one pod on the same global batch the result differs only by float summation
 *    order (within tolerance).
 *
 * A rank that is gone fails the collective on the others (`unavailable`, after the pod's
 * timeout at most); the group is dropped and formed anew on the next step. A replaced rank
 * asking to join tells rank 0 its group is broken: rank 0 drops it and starts a new epoch
 * (a fresh key prefix in the store), so old and new members never mix.
 */
import type { AdamParams, TransformerModel } from '../engine/model.js';
import { CollectiveStore, ProcessGroup, parseHostPort, shardLength } from './collectives.js';
import { TrainerError } from './errors.js';

/** Datum index ranges [start, end) of each rank: contiguous, in rank order. */
export function shardRanges(n: number, world: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let r = 0; r < world; r++) {
    out.push([Math.floor((r * n) / world), Math.floor(((r + 1) * n) / world)]);
  }
  return out;
}

export interface GradCounts {
  tokens: number;
  sequences: number;
  microBatches: number;
}

/** This replica's place in a run (the proto's DataParallel). */
export interface ReplicaPlace {
  rank: number;
  worldSize: number;
  rootAddress: string;
  rootModelId: string;
  /** The root pod's token, where the pods require one. */
  rootToken?: string;
  /** ZeRO-1: this replica keeps only its shard of the AdamW moments. */
  shardOptimizerState?: boolean;
  /** Collectives over TCP even when every replica shares this host (no shared memory). */
  tcpCollectives?: boolean;
}

/** Where a rank > 0 joins: rank 0's store port (on rank 0's host) and the group's key prefix. */
export interface Rendezvous {
  storePort: number;
  prefix: string;
}

/** The engine's gradient buffers of every trainable tensor, in engine order (no copy). */
export function gradViews(model: TransformerModel): Float32Array[] {
  return model
    .tensorInfo()
    .filter((t) => t.trainable)
    .map((t) => {
      const view = model.tensorView(t.name, 'grad');
      if (!view) throw new TrainerError('internal', `tensor ${t.name} has no gradient buffer`);
      return view;
    });
}

export interface DataParallelOptions {
  /** The address this pod listens on; its gloo endpoint and (rank 0) store bind to it. */
  host: string;
  /** How long a rank waits for the others (joining, and each collective). */
  timeoutMs: number;
  /** Rank > 0: asks rank 0 (the JoinCollective RPC) where and under which prefix to join. */
  askRoot: (place: ReplicaPlace) => Promise<Rendezvous>;
  /** Told of every group this pod's models join (the pod logs which transport it took). */
  onJoined?: (modelId: string, group: ProcessGroup) => void;
}

/** The engine's trainable weights, in engine order (the flat vector's layout; no copy). */
function weightViews(model: TransformerModel): Float32Array[] {
  return model.trainableNames().map((name) => {
    const view = model.tensorView(name);
    if (!(view instanceof Float32Array)) {
      throw new TrainerError('internal', `trainable tensor ${name} is not stored in float32`);
    }
    return view;
  });
}

/** A ZeRO-1 replica's shard of the AdamW moments (flat layout: collectives.ts shardLength). */
interface MomentShard {
  world: number;
  rank: number;
  m: Float32Array;
  v: Float32Array;
}

/** A moment shard with its place in the flat vector (as checkpoints read and write it). */
export interface MomentShardOf {
  begin: number;
  length: number;
  m: Float32Array;
  v: Float32Array;
}

/** The engine's AdamW parameters of one step (gradScale included). */
export type StepParams = Required<Pick<AdamParams, 'learningRate'>> & AdamParams;

interface RootState {
  world: number;
  epoch: number;
  group: ProcessGroup | undefined;
  forming: Promise<ProcessGroup> | undefined;
}

const WILDCARD = new Set(['', '0.0.0.0', '::', '[::]']);

/**
 * One pod's side of data parallelism: the groups of its models, and (as rank 0) the store
 * and the epochs of the groups it roots.
 */
export class DataParallelGroups {
  private store: CollectiveStore | undefined;
  private readonly roots = new Map<string, RootState>();
  private readonly members = new Map<string, { key: string; group: Promise<ProcessGroup> }>();
  /** ZeRO-1 moment shards, by model id. */
  private readonly shards = new Map<string, MomentShard>();
  private closed: TrainerError | undefined;

  constructor(private readonly options: DataParallelOptions) {}

  private storeOf(): CollectiveStore {
    if (!this.store) {
      const host = WILDCARD.has(this.options.host) ? '0.0.0.0' : this.options.host;
      this.store = new CollectiveStore(host, 0);
    }
    return this.store;
  }

  private root(modelId: string, world: number): RootState {
    let st = this.roots.get(modelId);
    if (!st || st.world !== world) {
      st?.group?.close();
      st = { world, epoch: (st?.epoch ?? -1) + 1, group: undefined, forming: undefined };
      this.roots.set(modelId, st);
    }
    return st;
  }

  /**
   * Rank 0, the JoinCollective RPC: a rank > 0 of root model `modelId` asks where to join.
   * A rank asking while this root holds a formed group lost its own group (it was replaced,
   * or a collective failed on its side): the old group is closed and a new epoch begins.
   */
  join(modelId: string, rank: number, world: number): Rendezvous {
    this.assertOpen();
    if (
      !Number.isInteger(world) ||
      world < 2 ||
      !Number.isInteger(rank) ||
      rank < 1 ||
      rank >= world
    ) {
      throw new TrainerError(
        'invalid_argument',
        `join_collective: rank ${rank} is not in [1, ${world}) (world_size must be at least 2)`,
        { field: 'rank' },
      );
    }
    const st = this.root(modelId, world);
    if (st.group) {
      st.group.close();
      st.group = undefined;
      st.epoch++;
    }
    return { storePort: this.storeOf().port, prefix: this.prefix(modelId, world, st.epoch) };
  }

  private prefix(modelId: string, world: number, epoch: number): string {
    return `${modelId}/w${world}/e${epoch}`;
  }

  private glooHost(): string {
    return WILDCARD.has(this.options.host) ? '' : this.options.host;
  }

  /** This rank's group for a step of `modelId`, joining (or forming, at rank 0) when needed. */
  async group(modelId: string, place: ReplicaPlace): Promise<ProcessGroup> {
    this.assertOpen();
    const { rank, worldSize: world } = place;
    if (
      !Number.isInteger(world) ||
      world < 1 ||
      !Number.isInteger(rank) ||
      rank < 0 ||
      rank >= world
    ) {
      throw new TrainerError(
        'invalid_argument',
        `data_parallel: rank ${rank} is not in [0, ${world})`,
        { field: 'data_parallel.rank' },
      );
    }
    const sharedMemory = !place.tcpCollectives;
    if (rank === 0) return this.rootGroup(modelId, world, sharedMemory);
    if (!place.rootAddress || !place.rootModelId) {
      throw new TrainerError(
        'invalid_argument',
        'data_parallel: root_address and root_model_id are required for rank > 0',
        { field: 'data_parallel' },
      );
    }
    const key = `${place.rootAddress}|${place.rootModelId}|${rank}|${world}|${sharedMemory}`;
    const have = this.members.get(modelId);
    if (have && have.key === key) {
      const g = await have.group.catch(() => undefined);
      if (g && !g.closed) return g;
    } else {
      void have?.group.then((g) => g.close()).catch(() => undefined);
    }
    const joining = (async () => {
      const rv = await this.options.askRoot(place);
      const { host } = parseHostPort(place.rootAddress);
      return ProcessGroup.join({
        rank,
        world,
        storeHost: host,
        storePort: rv.storePort,
        prefix: rv.prefix,
        host: this.glooHost(),
        timeoutMs: this.options.timeoutMs,
        sharedMemory,
      });
    })();
    this.members.set(modelId, { key, group: joining });
    try {
      const g = await joining;
      this.options.onJoined?.(modelId, g);
      return g;
    } catch (error) {
      if (this.members.get(modelId)?.group === joining) this.members.delete(modelId);
      throw error;
    }
  }

  private async rootGroup(
    modelId: string,
    world: number,
    sharedMemory: boolean,
  ): Promise<ProcessGroup> {
    const st = this.root(modelId, world);
    if (st.group && !st.group.closed) return st.group;
    if (st.forming) return st.forming;
    const epoch = st.epoch;
    const store = this.storeOf();
    const forming = ProcessGroup.join({
      rank: 0,
      world,
      storeHost: WILDCARD.has(store.host) ? '127.0.0.1' : store.host,
      storePort: store.port,
      prefix: this.prefix(modelId, world, epoch),
      host: this.glooHost(),
      timeoutMs: this.options.timeoutMs,
      sharedMemory,
    });
    st.forming = forming;
    try {
      const g = await forming;
      if (st.epoch !== epoch || this.roots.get(modelId) !== st) {
        // A rank asked to rejoin while this one formed: it is already stale.
        g.close();
        throw new TrainerError(
          'unavailable',
          'data_parallel: a replica rejoined while the group formed; retry the step',
        );
      }
      st.group = g;
      this.options.onJoined?.(modelId, g);
      return g;
    } catch (error) {
      // The next attempt starts a new epoch: ranks that joined this one are not waited for.
      if (st.epoch === epoch) st.epoch++;
      throw error;
    } finally {
      st.forming = undefined;
    }
  }

  /**
   * optim_step's exchange: sums this rank's counts and the model's gradients (in place, in
   * the engine's buffers) over the ranks. Call it under the engine lock.
   */
  async allReduce(
    modelId: string,
    model: TransformerModel,
    place: ReplicaPlace,
    local: GradCounts,
  ): Promise<GradCounts> {
    const group = await this.group(modelId, place);
    // With the counts, whether each rank holds a moment shard (and of which world), so every
    // rank takes the same decision below.
    const held = this.shards.get(modelId);
    const fits = held?.world === place.worldSize && held.rank === place.rank;
    const counts = Float64Array.from([
      local.tokens,
      local.sequences,
      local.microBatches,
      held ? 1 : 0,
      fits ? 1 : 0,
    ]);
    await group.allReduceF64(counts);
    if (counts[2] === 0) return { tokens: 0, sequences: 0, microBatches: 0 };
    if (!place.shardOptimizerState) {
      // An unsharded step runs the engine's AdamW on its own moments: ranks that hold shards
      // (a sharded run, or a sharded load, went before) first gather them back into the
      // engine — else the step would start from zero moments.
      if (counts[3]! > 0) await this.unshard(modelId, model, place, counts[3]!, counts[4]!);
      await group.allReduce(gradViews(model));
    }
    // Sharded: the gradients are reduce-scattered inside the step (shardedStep).
    return { tokens: counts[0]!, sequences: counts[1]!, microBatches: counts[2]! };
  }

  /**
   * Every rank's moment shards gathered back into every rank's engine, the shards dropped.
   * `holders` ranks hold a shard, `fitting` of them the shard of their own rank at this world
   * size: unless all `world` ranks do, the moments cannot be put together, and every rank
   * says so alike.
   */
  private async unshard(
    modelId: string,
    model: TransformerModel,
    place: ReplicaPlace,
    holders: number,
    fitting: number,
  ): Promise<void> {
    const world = place.worldSize;
    if (holders !== world || fitting !== world) {
      throw new TrainerError(
        'invalid_argument',
        `optim_step: ${holders} of ${world} replicas hold a shard of the optimizer state for this run's world size, so the moments cannot be put together for an unsharded step; load a checkpoint with load_state_with_optimizer first`,
        { field: 'data_parallel' },
      );
    }
    await this.gatherMoments(modelId, model, place);
    this.shards.delete(modelId);
  }

  /** This rank's moment shard for `world` ranks, created (zero) on first use. */
  private shardOf(
    modelId: string,
    model: TransformerModel,
    rank: number,
    world: number,
  ): MomentShard {
    let shard = this.shards.get(modelId);
    if (shard && (shard.world !== world || shard.rank !== rank)) {
      throw new TrainerError(
        'invalid_argument',
        `optim_step: this replica holds optimizer shard ${shard.rank} of ${shard.world}, the step asks for ${rank} of ${world}; load a checkpoint with load_state_with_optimizer to reshard`,
        { field: 'data_parallel' },
      );
    }
    if (!shard) {
      const n = gradViews(model).reduce((s, g) => s + g.length, 0);
      const len = shardLength(n, world);
      shard = this.fromEngine(model, rank, world, len);
      this.shards.set(modelId, shard);
    }
    return shard;
  }

  /** This rank's slice of the engine's moments (zeros if released), then frees the engine's. */
  private fromEngine(
    model: TransformerModel,
    rank: number,
    world: number,
    len: number,
  ): MomentShard {
    const shard: MomentShard = {
      world,
      rank,
      m: new Float32Array(len),
      v: new Float32Array(len),
    };
    const begin = rank * len;
    let at = 0;
    for (const name of model.trainableNames()) {
      const state = model.getOptimizerState(name);
      const numel = model.tensorView(name, 'grad')!.length;
      const lo = Math.max(begin, at);
      const hi = Math.min(begin + len, at + numel);
      if (state && state.m.length === numel && lo < hi) {
        shard.m.set(state.m.subarray(lo - at, hi - at), lo - begin);
        shard.v.set(state.v.subarray(lo - at, hi - at), lo - begin);
      }
      at += numel;
    }
    model.releaseOptimizerState();
    return shard;
  }

  /**
   * ZeRO-1 optimizer step (after allReduce with shardOptimizerState gave the global counts):
   * gradients reduce-scattered, AdamW on this rank's shard of weights and moments, weights
   * all-gathered. Call it under the engine lock.
   */
  async shardedStep(
    modelId: string,
    model: TransformerModel,
    place: ReplicaPlace,
    p: StepParams,
  ): Promise<{ gradNorm: number; step: number }> {
    const group = await this.group(modelId, place);
    const shard = this.shardOf(modelId, model, place.rank, place.worldSize);
    const step = model.step + 1;
    const gradNorm = await group.zeroStep(gradViews(model), weightViews(model), shard.m, shard.v, {
      lr: p.learningRate,
      beta1: p.beta1 ?? 0.9,
      beta2: p.beta2 ?? 0.95,
      eps: p.eps ?? 1e-8,
      weightDecay: p.weightDecay ?? 0,
      gradClip: p.gradClipNorm ?? 0,
      gradScale: p.gradScale ?? 1,
      step,
    });
    model.step = step;
    return { gradNorm, step };
  }

  /** Whether this pod holds a moment shard of `modelId` (its engine's moments are released). */
  sharded(modelId: string): boolean {
    return this.shards.has(modelId);
  }

  /**
   * Every rank all-gathers the moment shards and the full moments go back into the engine
   * (before an unsharded step). Call it under the engine lock.
   */
  async gatherMoments(
    modelId: string,
    model: TransformerModel,
    place: ReplicaPlace,
  ): Promise<void> {
    const group = await this.group(modelId, place);
    const shard = this.shardOf(modelId, model, place.rank, place.worldSize);
    const names = model.trainableNames();
    const sizes = names.map((name) => model.tensorView(name, 'grad')!.length);
    const m = sizes.map((n) => new Float32Array(n));
    const v = sizes.map((n) => new Float32Array(n));
    await group.allGather(shard.m, m);
    await group.allGather(shard.v, v);
    names.forEach((name, i) => {
      model.setOptimizerState(name, m[i]!, v[i]!);
    });
  }

  /** This rank's part of the flat trainable vector at `world` ranks (its moment shard's extent). */
  momentExtent(
    model: TransformerModel,
    rank: number,
    world: number,
  ): { begin: number; length: number; padded: number } {
    const n = gradViews(model).reduce((s, g) => s + g.length, 0);
    const padded = shardLength(n, world);
    const begin = Math.min(n, rank * padded);
    return { begin, length: Math.min(n, begin + padded) - begin, padded };
  }

  /**
   * A sharded save, DCP style: rank 0 says where the checkpoint goes (`target`), every rank
   * writes its own file — its shard of the moments, straight from the shard — (`write`), and
   * rank 0 commits them all (`commit`) and resolves to what that gives; the other ranks
   * resolve to undefined. A failure at any rank fails the save on every rank (each phase's
   * outcome is exchanged), so no rank waits on one that gave up. Call it under the engine lock.
   */
  async shardedSave<T, W, R>(
    modelId: string,
    model: TransformerModel,
    place: ReplicaPlace,
    io: {
      target: () => Promise<T>;
      write: (target: T, shard: MomentShardOf) => Promise<W>;
      commit: (target: T, written: W[]) => Promise<R>;
    },
  ): Promise<R | undefined> {
    const group = await this.group(modelId, place);
    const extent = this.momentExtent(model, place.rank, place.worldSize);
    // Each rank's outcome of a phase, on every rank: its value, or the error it met.
    const phase = async <V>(run: () => Promise<V>, ranks: 'root' | 'all'): Promise<V[]> => {
      let own: unknown;
      let body: { ok: V } | { error: string } | null = null;
      if (ranks === 'all' || place.rank === 0) {
        try {
          body = { ok: await run() };
        } catch (error) {
          own = error;
          body = { error: (error as Error).message };
        }
      }
      const all = await group.allGatherBytes(
        body ? new TextEncoder().encode(JSON.stringify(body)) : new Uint8Array(0),
      );
      const parsed = all.map((b) =>
        b.length
          ? (JSON.parse(new TextDecoder().decode(b)) as { ok: V } | { error: string })
          : null,
      );
      if (own) throw own;
      const failed = parsed.findIndex((p) => p && 'error' in p);
      if (failed >= 0) {
        throw new TrainerError(
          'unavailable',
          `save_state: replica ${failed} failed its part of the sharded save: ${(parsed[failed] as { error: string }).error}`,
        );
      }
      return parsed.map((p) => (p && 'ok' in p ? p.ok : (undefined as V)));
    };
    const [target] = await phase(io.target, 'root');
    const written = await phase(async () => {
      // Inside the phase: a rank holding a shard of another world fails the save on all.
      const shard = this.shardOf(modelId, model, place.rank, place.worldSize);
      return io.write(target as T, { ...extent, m: shard.m, v: shard.v });
    }, 'all');
    if (place.rank !== 0) return undefined;
    return io.commit(target as T, written);
  }

  /** After a sharded load that read only this rank's part of the moments: it is the shard. */
  adopt(modelId: string, place: ReplicaPlace, shard: MomentShardOf): void {
    this.shards.set(modelId, {
      world: place.worldSize,
      rank: place.rank,
      m: shard.m,
      v: shard.v,
    });
  }

  /**
   * After a load into the engine (full moments, or fresh zeros): a sharded rank keeps its
   * shard of them for its world size — resharding whatever world saved them — and the
   * engine's copies are freed; an unsharded load drops any shard this pod held.
   */
  afterLoad(modelId: string, model: TransformerModel, place: ReplicaPlace | undefined): void {
    // Whatever shard this pod held belongs to the state the load replaced.
    this.shards.delete(modelId);
    if (!place?.shardOptimizerState) return;
    const n = gradViews(model).reduce((s, g) => s + g.length, 0);
    this.shards.set(
      modelId,
      this.fromEngine(model, place.rank, place.worldSize, shardLength(n, place.worldSize)),
    );
  }

  /** Drops the groups of a model (it was deleted). */
  forget(modelId: string): void {
    this.shards.delete(modelId);
    const st = this.roots.get(modelId);
    st?.group?.close();
    this.roots.delete(modelId);
    const m = this.members.get(modelId);
    void m?.group.then((g) => g.close()).catch(() => undefined);
    this.members.delete(modelId);
  }

  private assertOpen(): void {
    if (this.closed) throw this.closed;
  }

  /** The pod is shutting down: every group closes (a collective in flight fails). */
  close(error: TrainerError): void {
    this.closed = error;
    for (const id of [...this.roots.keys(), ...this.members.keys()]) this.forget(id);
    this.store?.close();
    this.store = undefined;
  }
}

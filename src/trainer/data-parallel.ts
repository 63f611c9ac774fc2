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
 *    every rank. Each rank copies its gradients (every trainable tensor, engine tensor order,
 *    one flat float32 buffer read through tensorView(name, 'grad')) and:
 *      - rank 0 hands them to its GradientReducer directly;
 *      - rank r > 0 sends them to rank 0 with the AllReduceGradients RPC.
 * 4. The reducer of rank 0 waits until all `world` ranks contributed for this step, then sums
 *    in rank order — out = g0; out += g1; ...; out += g(world-1), element by element in
 *    float32 — and sums the counts. That one buffer is the answer to every rank (rank 0's
 *    local call and each AllReduceGradients response), so every replica holds bitwise the
 *    same gradients.
 * 5. Each rank writes the sum into its engine's gradient buffers (tensorView, no copy of the
 *    engine memory), computes the normalisation from the GLOBAL counts (1 / tokens or
 *    1 / sequences over every rank's shards) and runs AdamW. Identical weights + identical
 *    gradients + identical hyper-parameters ⇒ identical updates: the replicas stay bitwise
 *    identical and a rerun with the same data is bitwise identical. Against one pod on the
 *    same global batch the result differs only by float summation order (within tolerance).
 *
 * A rank that does not arrive within the timeout fails the step on every rank that did
 * (`unavailable`), so a dead replica never hangs the others.
 */
import type { TransformerModel } from '../engine/model.js';
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

export interface GradContribution extends GradCounts {
  grads: Float32Array;
}

/** The names of the trainable tensors, in the engine's order (the flat buffer's layout). */
function trainable(model: TransformerModel): string[] {
  return model
    .tensorInfo()
    .filter((t) => t.trainable)
    .map((t) => t.name);
}

function gradView(model: TransformerModel, name: string): Float32Array {
  const view = model.tensorView(name, 'grad');
  if (!view) throw new TrainerError('internal', `tensor ${name} has no gradient buffer`);
  return view;
}

/** A copy of every trainable gradient as one flat buffer. */
export function flattenGrads(model: TransformerModel): Float32Array {
  const views = trainable(model).map((n) => gradView(model, n));
  const out = new Float32Array(views.reduce((s, v) => s + v.length, 0));
  let at = 0;
  for (const v of views) {
    out.set(v, at);
    at += v.length;
  }
  return out;
}

/** Overwrites the engine's gradient buffers with `flat` (the layout of flattenGrads). */
export function writeGrads(model: TransformerModel, flat: Float32Array): void {
  let at = 0;
  for (const name of trainable(model)) {
    const view = gradView(model, name);
    if (at + view.length > flat.length) break;
    view.set(flat.subarray(at, at + view.length));
    at += view.length;
  }
  if (at !== flat.length) {
    throw new TrainerError(
      'shape_mismatch',
      `all-reduced gradients hold ${flat.length} values; this model's trainable tensors hold ${at}+`,
    );
  }
}

/** Float32 view of little-endian bytes (copied when unaligned). */
export function bytesToFloat32(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0) {
    throw new TrainerError(
      'invalid_argument',
      `gradient bytes: ${bytes.byteLength} is not a multiple of 4`,
    );
  }
  if (bytes.byteOffset % 4 === 0) {
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  }
  // A fresh copy (Buffer#slice would be a view of the same, unaligned, memory).
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

export function float32ToBytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

interface Round {
  world: number;
  parts: Array<GradContribution | undefined>;
  arrived: number;
  waiters: Array<{ resolve: (r: GradContribution) => void; reject: (e: unknown) => void }>;
  timer: NodeJS.Timeout;
}

/**
 * Rank 0's side of the all-reduce for one model: collects every rank's contribution to a
 * step, sums them in rank order and answers every contributor with the same sum.
 */
export class GradientReducer {
  private readonly rounds = new Map<number, Round>();

  constructor(private readonly timeoutMs = 120_000) {}

  contribute(
    step: number,
    rank: number,
    world: number,
    part: GradContribution,
  ): Promise<GradContribution> {
    if (
      !Number.isInteger(world) ||
      world < 1 ||
      !Number.isInteger(rank) ||
      rank < 0 ||
      rank >= world
    ) {
      return Promise.reject(
        new TrainerError(
          'invalid_argument',
          `data_parallel: rank ${rank} is not in [0, ${world})`,
          {
            field: 'data_parallel',
          },
        ),
      );
    }
    let round = this.rounds.get(step);
    if (!round) {
      const timer = setTimeout(() => {
        this.fail(
          step,
          new TrainerError(
            'unavailable',
            `all-reduce of step ${step}: only ${this.rounds.get(step)?.arrived ?? 0} of ${world} replicas sent their gradients within ${this.timeoutMs} ms; a replica is gone — reconnect and resume from the last saved state`,
          ),
        );
      }, this.timeoutMs);
      timer.unref();
      round = { world, parts: new Array(world).fill(undefined), arrived: 0, waiters: [], timer };
      this.rounds.set(step, round);
    }
    if (round.world !== world) {
      return Promise.reject(
        new TrainerError(
          'invalid_argument',
          `all-reduce of step ${step}: world_size ${world} differs from the ${round.world} of the other replicas`,
        ),
      );
    }
    const r = round;
    return new Promise<GradContribution>((resolve, reject) => {
      r.waiters.push({ resolve, reject });
      if (r.parts[rank] === undefined) r.arrived++;
      r.parts[rank] = part; // a retried contribution replaces the first one
      if (r.arrived === r.world) this.finish(step, r);
    });
  }

  private finish(step: number, round: Round): void {
    this.rounds.delete(step);
    clearTimeout(round.timer);
    let sum: GradContribution;
    try {
      sum = sumInRankOrder(round.parts as GradContribution[]);
    } catch (error) {
      for (const w of round.waiters) w.reject(error);
      return;
    }
    for (const w of round.waiters) w.resolve(sum);
  }

  private fail(step: number, error: TrainerError): void {
    const round = this.rounds.get(step);
    if (!round) return;
    this.rounds.delete(step);
    for (const w of round.waiters) w.reject(error);
  }

  /** Fails every waiting round (the pod is shutting down). */
  close(error: TrainerError): void {
    for (const step of [...this.rounds.keys()]) this.fail(step, error);
  }
}

/** out = p0; out += p1; ... in rank order (fixed float32 summation order). */
export function sumInRankOrder(parts: readonly GradContribution[]): GradContribution {
  const first = parts[0];
  if (!first) throw new TrainerError('internal', 'all-reduce with no contribution');
  const out = new Float32Array(first.grads);
  let tokens = first.tokens;
  let sequences = first.sequences;
  let microBatches = first.microBatches;
  for (let r = 1; r < parts.length; r++) {
    const p = parts[r]!;
    if (p.grads.length !== out.length) {
      throw new TrainerError(
        'shape_mismatch',
        `all-reduce: rank ${r} sent ${p.grads.length} gradient values, rank 0 ${out.length}; the replicas do not train the same model`,
      );
    }
    const g = p.grads;
    for (let i = 0; i < out.length; i++) out[i]! += g[i]!;
    tokens += p.tokens;
    sequences += p.sequences;
    microBatches += p.microBatches;
  }
  return { grads: out, tokens, sequences, microBatches };
}

/**
 * The core of a small reverse-mode autodiff over per-token vectors.
 *
 * A `Vector` is one node of the graph: a Float64Array of values (a whole sequence of
 * logprobs, or a length-1 scalar) plus, when it depends on a leaf that requires a gradient,
 * the inputs it was computed from and a `backprop` closure. There is one object per vector
 * operation, never one per element, so a loss over 64 × 2048 tokens builds a graph of a few
 * hundred nodes and every inner loop runs over a typed array.
 *
 * Operations on vectors that need no gradient return plain constants (no inputs, no closure):
 * constant folding is free, and the graph only holds what backward() must visit.
 */
import { LossError } from '../errors.js';

/** Receives the gradient of the loss with respect to this node and adds into its inputs. */
export type Backprop = (outGrad: Float64Array) => void;

export class Vector {
  /** The values. Treat as read-only: ops and backward rely on them staying as computed. */
  readonly value: Float64Array;
  readonly requiresGrad: boolean;
  /** d(loss)/d(this) after backward(); null before, or when nothing flowed here. */
  grad: Float64Array | null = null;
  /** @internal Nodes this one was computed from (empty for leaves and constants). */
  readonly inputs: readonly Vector[];
  /** @internal Null for leaves and constants. */
  readonly backprop: Backprop | null;

  constructor(
    value: Float64Array,
    requiresGrad: boolean,
    inputs: readonly Vector[] = [],
    backprop: Backprop | null = null,
  ) {
    this.value = value;
    this.requiresGrad = requiresGrad;
    this.inputs = inputs;
    this.backprop = backprop;
  }

  get length(): number {
    return this.value.length;
  }

  /** True for leaves created by param(): the vectors backward() reports gradients for. */
  get isLeaf(): boolean {
    return this.backprop === null;
  }

  /** The single value of a length-1 vector (a loss, a sum, a mean). */
  item(): number {
    if (this.value.length !== 1) {
      throw new LossError(
        'shape_mismatch',
        `item() needs a length-1 vector, this one has ${this.value.length} values`,
      );
    }
    return this.value[0]!;
  }

  toArray(): number[] {
    return Array.from(this.value);
  }
}

/**
 * Anything an op accepts where a vector is expected: numbers become length-1 constants and
 * arrays (weights, reference logprobs) become constants.
 */
export type Operand = Vector | number | ArrayLike<number>;

function toFloat64(values: ArrayLike<number>): Float64Array {
  // A Float64Array is used as-is: copying 131k logprobs per call is measurable, and ops
  // never write into their inputs' values.
  return values instanceof Float64Array ? values : Float64Array.from(values);
}

/** A leaf that requires a gradient (a logprob vector). Float64Array input is not copied. */
export function param(values: ArrayLike<number>): Vector {
  return new Vector(toFloat64(values), true);
}

/** A vector that needs no gradient (weights, advantages, reference logprobs). */
export function constant(values: ArrayLike<number>): Vector {
  return new Vector(toFloat64(values), false);
}

export function scalar(x: number): Vector {
  return new Vector(Float64Array.of(x), false);
}

export function lift(x: Operand): Vector {
  if (x instanceof Vector) return x;
  return typeof x === 'number' ? scalar(x) : constant(x);
}

/**
 * Builds an op's output node. When no input requires a gradient the result is a constant and
 * the closure is dropped, so graphs over constants cost nothing at backward time.
 */
export function node(value: Float64Array, inputs: readonly Vector[], backprop: Backprop): Vector {
  for (const input of inputs) {
    if (input.requiresGrad) return new Vector(value, true, inputs, backprop);
  }
  return new Vector(value, false);
}

/** The gradient buffer of `v`, allocated as zeros on first use. */
export function gradBuffer(v: Vector): Float64Array {
  if (v.grad === null) v.grad = new Float64Array(v.value.length);
  return v.grad;
}

/**
 * Adds `contrib` (one entry per output element) into `x`'s gradient. A length-1 `x` that was
 * broadcast over the output receives the sum. When `x` has no gradient yet and the shapes
 * match, an `owned` contrib (a fresh array nobody else holds) becomes the gradient without a
 * copy; a shared one (an upstream gradient) is copied.
 */
export function accumulate(x: Vector, contrib: Float64Array, owned = true): void {
  if (!x.requiresGrad) return;
  const n = contrib.length;
  if (x.value.length === n) {
    if (x.grad === null) {
      x.grad = owned ? contrib : contrib.slice();
      return;
    }
    const g = x.grad;
    for (let i = 0; i < n; i++) g[i]! += contrib[i]!;
    return;
  }
  let s = 0;
  for (let i = 0; i < n; i++) s += contrib[i]!;
  gradBuffer(x)[0]! += s;
}

/**
 * The length of a broadcast between operands (vectors, or plain arrays such as a condition):
 * equal lengths, or length 1 against anything.
 */
export function broadcastLength(op: string, ...vs: readonly { readonly length: number }[]): number {
  let n = 1;
  for (const v of vs) {
    const len = v.length;
    if (len === 1) continue;
    if (n === 1) n = len;
    else if (len !== n) {
      const lengths = vs.map((u) => u.length).join(', ');
      throw new LossError(
        'shape_mismatch',
        `${op}: cannot broadcast vectors of lengths ${lengths}; lengths must match or be 1`,
      );
    }
  }
  return n;
}

/** Stride for reading a possibly-broadcast input in a loop: 0 for length 1, else 1. */
export function stride(v: Vector): number {
  return v.value.length === 1 ? 0 : 1;
}

/** Nodes reachable from `root` that require a gradient, inputs before the nodes using them. */
function topologicalOrder(root: Vector): Vector[] {
  const order: Vector[] = [];
  const visited = new Set<Vector>();
  // Iterative post-order DFS: long chains of ops (a loss summed datum by datum) would
  // overflow the call stack with recursion.
  const stack: { v: Vector; next: number }[] = [{ v: root, next: 0 }];
  visited.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.next < top.v.inputs.length) {
      const child = top.v.inputs[top.next++]!;
      if (child.requiresGrad && !visited.has(child)) {
        visited.add(child);
        stack.push({ v: child, next: 0 });
      }
    } else {
      order.push(top.v);
      stack.pop();
    }
  }
  return order;
}

/**
 * Back-propagates from a length-1 `loss`. Leaves accumulate into `.grad` across calls (as in
 * PyTorch); gradients of intermediate nodes are recomputed from scratch on every call.
 */
export function backward(loss: Vector): void {
  if (loss.value.length !== 1) {
    throw new LossError(
      'invalid_loss_output',
      `backward() needs a scalar loss (length 1), got a vector of ${loss.value.length} values`,
    );
  }
  if (!loss.requiresGrad) return;
  const order = topologicalOrder(loss);
  for (const v of order) if (!v.isLeaf) v.grad = null;
  loss.grad = Float64Array.of(1);
  for (let i = order.length - 1; i >= 0; i--) {
    const v = order[i]!;
    if (v.backprop !== null && v.grad !== null) v.backprop(v.grad);
  }
}

/**
 * d(loss)/d(input) for each input, zeros where the loss does not depend on it. Clears the
 * inputs' previous gradients first, so the answer is for this loss alone.
 */
export function gradients(loss: Vector, inputs: readonly Vector[]): Float64Array[] {
  for (const x of inputs) x.grad = null;
  backward(loss);
  return inputs.map((x) => x.grad ?? new Float64Array(x.value.length));
}

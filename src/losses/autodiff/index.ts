/**
 * The autodiff: vectors, leaves, backward, and every op (plain and fused). `node`,
 * `accumulate`, `gradBuffer`, `lift` and `broadcastLength` are the pieces a custom op is made
 * of: compute the output values, then `node(out, inputs, (g) => accumulate(input, dIn))`.
 */

export { clippedSurrogate, expDiff, fusedScalar, k3 } from './fused.js';
export {
  abs,
  add,
  addAll,
  clamp,
  concat,
  detach,
  div,
  dot,
  exp,
  expm1,
  log,
  log1mexp,
  log1p,
  logsigmoid,
  maximum,
  mean,
  minimum,
  mul,
  neg,
  slice,
  square,
  stopGradient,
  sub,
  sum,
  where,
} from './ops.js';
export {
  accumulate,
  type Backprop,
  backward,
  broadcastLength,
  constant,
  gradBuffer,
  gradients,
  lift,
  node,
  type Operand,
  param,
  scalar,
  Vector,
} from './vector.js';

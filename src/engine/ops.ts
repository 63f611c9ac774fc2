// The engine's operators one at a time, exactly as the model runs them (the native Backend,
// native/src/backend.h): for tests that check each against a plain reference and its
// gradients by finite differences. Every call copies its inputs and returns new arrays.
import { nativeEngine } from './native.js';

interface Threads {
  /** Threads of the backend that runs the operator (results do not depend on it). */
  threads?: number;
}

type Op<I, O> = (options: I & Threads) => O;

export interface EngineOps {
  /** Name of the backend (e.g. `cpu-avx512 x2`). */
  backend: Op<object, string>;
  /** y = x / sqrt(mean(x²) + eps) · w per row; rstd = 1/sqrt(mean(x²) + eps). */
  rmsnormForward: Op<
    { x: Float32Array; w: Float32Array; rows: number; dim: number; eps?: number },
    { y: Float32Array; rstd: Float32Array }
  >;
  rmsnormBackward: Op<
    {
      dy: Float32Array;
      x: Float32Array;
      w: Float32Array;
      rstd: Float32Array;
      rows: number;
      dim: number;
    },
    { dx: Float32Array; dw: Float32Array }
  >;
  /** Rotary embedding (HF rotate_half) of `heads` heads per row; `inverse` is its transpose (the backward). */
  rope: Op<
    {
      x: Float32Array;
      rows: number;
      heads: number;
      headDim: number;
      positions: Int32Array;
      /** [positions x headDim/2] tables */
      cos: Float32Array;
      sin: Float32Array;
      inverse?: boolean;
    },
    Float32Array
  >;
  /** silu(gate)·up */
  swigluForward: Op<{ gate: Float32Array; up: Float32Array }, Float32Array>;
  swigluBackward: Op<
    { gate: Float32Array; up: Float32Array; dact: Float32Array },
    { dgate: Float32Array; dup: Float32Array }
  >;
  /** Causal grouped-query attention of sequences packed row after row (scale 1/sqrt(headDim)). */
  attentionForward: Op<
    {
      q: Float32Array;
      k: Float32Array;
      v: Float32Array;
      seqLens: Int32Array;
      heads: number;
      kvHeads: number;
      headDim: number;
    },
    { out: Float32Array; lse: Float32Array }
  >;
  attentionBackward: Op<
    {
      q: Float32Array;
      k: Float32Array;
      v: Float32Array;
      out: Float32Array;
      dout: Float32Array;
      lse: Float32Array;
      seqLens: Int32Array;
      heads: number;
      kvHeads: number;
      headDim: number;
    },
    { dq: Float32Array; dk: Float32Array; dv: Float32Array }
  >;
  /**
   * Fused cross-entropy: logprob of each row's target under softmax(x·Wᵀ), its normaliser, and
   * with `grad` d logprob / d x. `w` is float32 or bf16 bits (Uint16Array), [vocab x dim].
   */
  crossEntropy: Op<
    {
      x: Float32Array;
      w: Float32Array | Uint16Array;
      targets: Int32Array;
      rows: number;
      vocab: number;
      dim: number;
      grad?: boolean;
    },
    { logprobs: Float32Array; lse: Float32Array; grad?: Float32Array }
  >;
  /** One decoupled AdamW update (torch.optim.AdamW) at optimizer step `step` (1-based). */
  adamw: Op<
    {
      w: Float32Array;
      g: Float32Array;
      m: Float32Array;
      v: Float32Array;
      step: number;
      lr?: number;
      beta1?: number;
      beta2?: number;
      eps?: number;
      weightDecay?: number;
      gradScale?: number;
    },
    { w: Float32Array; m: Float32Array; v: Float32Array }
  >;
}

/** The native operators (the addon's `ops`), typed. */
export function engineOps(): EngineOps {
  return nativeEngine().ops as unknown as EngineOps;
}

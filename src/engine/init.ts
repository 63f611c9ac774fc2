// Seeded random initialisation of a model's weights, the way HF initialises Llama/Qwen
// (`initializer_range`): matrices ~ N(0, std²), norm weights at one, biases at zero. Used by the bundled
// model's pretraining and by benchmarks that need a realistic model of a given size.
import type { TensorMap } from '../checkpoints/safetensors.js';
import { seededRandom } from '../util/seeded-random.js';
import type { TransformerModel } from './model.js';

/** A standard normal draw from a uniform source (Box–Muller, cosine branch). */
export function standardNormal(uniform: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

export interface InitOptions {
  /** Standard deviation of the matrices. Default 0.02. */
  std?: number;
  /** Norm weights are 1 + normJitter·N(0,1); 0 (default) keeps them at exactly 1. */
  normJitter?: number;
}

/** Base weights of `model` from `seed` (LoRA adapters keep the engine's own initialisation). */
export function initialWeights(
  model: TransformerModel,
  seed: number,
  opts: InitOptions = {},
): TensorMap {
  const std = opts.std ?? 0.02;
  const jitter = opts.normJitter ?? 0;
  const u = seededRandom(seed);
  const out: TensorMap = new Map();
  for (const t of model.tensorInfo()) {
    if (t.name.includes('.lora_')) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (t.name.endsWith('.bias')) {
      // HF initialises linear biases at zero; the array already is.
    } else if (t.shape.length === 1) {
      if (jitter === 0) data.fill(1);
      else for (let i = 0; i < n; i++) data[i] = 1 + jitter * standardNormal(u);
    } else {
      for (let i = 0; i < n; i++) data[i] = std * standardNormal(u);
    }
    out.set(t.name, { shape: t.shape, data });
  }
  return out;
}

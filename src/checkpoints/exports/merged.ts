// Merged-base export of a LoRA model: every adapted linear becomes W + (alpha/r)·B·A and the
// result is written as a plain HF model directory (kind hf_merged). (The engine refuses an
// adapted lm_head with tied embeddings, so merging never has to untie them.)
import type { ModelConfig } from '../../engine/config.js';
import type { TransformerModel } from '../../engine/model.js';
import { CheckpointError } from '../dcp/errors.js';
import type { ExportManifest, ExportTarget } from './files.js';
import { writeExport } from './files.js';
import {
  type ExportCommitOptions,
  type HfExportOptions,
  hfModelFiles,
  type WeightsSpec,
} from './hf.js';

/**
 * W + scale·B·A for W [out, in], A [rank, in], B [out, rank]; the product and sum are formed
 * in float64 and rounded once.
 */
export function mergeLinear(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  scale: number,
  out: number,
  inDim: number,
  rank: number,
): Float32Array {
  if (w.length !== out * inDim || a.length !== rank * inDim || b.length !== out * rank)
    throw new CheckpointError(
      'invalid_argument',
      `mergeLinear: shapes do not fit [${out}, ${inDim}] with rank ${rank}`,
    );
  const merged = new Float32Array(w.length);
  const acc = new Float64Array(inDim);
  for (let o = 0; o < out; o++) {
    acc.fill(0);
    for (let k = 0; k < rank; k++) {
      const bk = b[o * rank + k]!;
      if (bk === 0) continue;
      const row = k * inDim;
      for (let i = 0; i < inDim; i++) acc[i]! += bk * a[row + i]!;
    }
    const base = o * inDim;
    for (let i = 0; i < inDim; i++) merged[base + i] = w[base + i]! + scale * acc[i]!;
  }
  return merged;
}

/** The merged model's config and weights (computed one tensor at a time when written). */
export function mergedWeights(model: TransformerModel): {
  config: ModelConfig;
  weights: WeightsSpec;
} {
  const lora = model.lora;
  if (!lora) throw new CheckpointError('incompatible', 'merged export needs a LoRA model');
  const scale = lora.alpha / lora.rank;
  const info = new Map(model.tensorInfo().map((t) => [t.name, t]));
  const specs = [...info.values()]
    .filter((t) => !t.name.includes('.lora_'))
    .map((t) => ({ name: t.name, shape: t.shape }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const source = (name: string): Float32Array => {
    const linear = name.replace(/\.weight$/, '');
    const w = model.getTensor(name);
    const a = info.get(`${linear}.lora_A.weight`);
    const b = info.get(`${linear}.lora_B.weight`);
    if (!name.endsWith('.weight') || !a || !b) return w;
    return mergeLinear(
      w,
      model.getTensor(a.name),
      model.getTensor(b.name),
      scale,
      b.shape[0]!,
      a.shape[1]!,
      lora.rank,
    );
  };
  const config: ModelConfig = { ...model.config };
  return { config, weights: { specs, source } };
}

/** Exports W + (alpha/r)·B·A for every adapted linear as an HF model directory. */
export async function exportMergedModel(
  model: TransformerModel,
  target: ExportTarget,
  opts: HfExportOptions & ExportCommitOptions = {},
): Promise<ExportManifest> {
  const { config, weights } = mergedWeights(model);
  const files = await hfModelFiles(config, weights, opts);
  return writeExport(target, files, {
    kind: 'hf_merged',
    baseModel: opts.baseModel,
    ttlSeconds: opts.ttlSeconds,
  });
}

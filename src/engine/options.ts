import { z } from 'zod';

/**
 * How the engine holds the model; none of these change results beyond what the comments say.
 * - baseDtype 'bfloat16' (LoRA only): the frozen base matrices (embeddings, projections,
 *   lm_head) are stored in bf16, half the memory; the GEMM widens them to float32 while
 *   packing, so compute stays fp32 and the results are bitwise those of a float32 base holding
 *   the same (bf16-rounded) values.
 * - recompute: keep only each layer's input in a training forward and rebuild the layer's
 *   activations in backward: one more forward of compute, a fraction of the memory; bitwise
 *   the same gradients. Off by default (small models do not need it).
 */
/**
 * How the engine holds a model; none of it changes the math (results are bitwise those of the
 * defaults). The one definition of these settings: trainer pods and jobs take them as they are.
 */
export const engineOptionsSchema = z.object({
  /** Storage of a LoRA model's frozen base matrices: bfloat16 halves their memory (compute stays float32). */
  baseDtype: z
    .enum(['float32', 'bfloat16'], {
      message: "baseDtype must be 'float32' or 'bfloat16' (bfloat16 needs a LoRA adapter)",
    })
    .default('float32'),
  /** Keep only each layer's input in a training forward and recompute the rest in backward. */
  recompute: z.boolean({ message: 'recompute must be true or false' }).default(false),
});
export type EngineOptions = z.input<typeof engineOptionsSchema>;

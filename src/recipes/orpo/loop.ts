/**
 * The ORPO loop (the cookbook's orpo_loop): per step the next `batch_size` preference pairs of
 * the seeded order (or the managed jobs' packed micro-batches with `batch_tokens`), the ORPO
 * loss (SFT on the chosen response + λ · odds-ratio term; src/losses) as a custom loss, and an
 * AdamW step normalised per pair. No reference model. The loop is the supervised recipes'
 * shared one (kit/supervised-run.ts), which managed ORPO jobs run too.
 */
import type { PreferenceResult } from '../dpo/loop.js';
import type { RecipeClients } from '../kit/clients.js';
import { runSupervised } from '../kit/supervised-run.js';
import type { OrpoConfig } from './config.js';

export function run(config: OrpoConfig, clients: RecipeClients): Promise<PreferenceResult> {
  return runSupervised({ kind: 'orpo', lambda: config.orpo_lambda }, config, clients, config.adam);
}

/**
 * The SFT loop (the cookbook's sft_loop): cross-entropy on the assistant tokens of each
 * conversation, per step the next `batch_size` conversations of the seeded order (or, with
 * `batch_tokens`, the managed jobs' packed micro-batches), AdamW at the scheduled rate with
 * gradients normalised per loss token. The loop itself is the supervised recipes' shared one
 * (kit/supervised-run.ts), which managed SFT jobs run too: resumable checkpoints every
 * `dcp_save_interval` steps, a resumable + promotable one at the end, promotion to
 * `output_model_id`.
 */
import type { RecipeClients } from '../kit/clients.js';
import { runSupervised, type SupervisedResult } from '../kit/supervised-run.js';
import type { SftConfig } from './config.js';

export type SftResult = SupervisedResult;

export function run(config: SftConfig, clients: RecipeClients): Promise<SftResult> {
  return runSupervised({ kind: 'sft' }, config, clients, config.adam);
}

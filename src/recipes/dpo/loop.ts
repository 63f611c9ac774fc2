/**
 * The DPO loop (the cookbook's dpo_loop): the frozen reference's logprobs of every chosen and
 * rejected sequence cached once, then per step the next `batch_size` pairs of the seeded order
 * (or the managed jobs' packed micro-batches with `batch_tokens`) through the DPO loss
 * (src/losses) as a custom loss — logprobs from the policy, the loss and its gradient here,
 * the backward pass on the trainer — and an AdamW step. The loop is the supervised recipes'
 * shared one (kit/supervised-run.ts), which managed DPO jobs run too.
 */
import type { RecipeClients } from '../kit/clients.js';
import { runSupervised, type SupervisedResult } from '../kit/supervised-run.js';
import type { DpoConfig } from './config.js';

export type PreferenceResult = SupervisedResult;

export function run(config: DpoConfig, clients: RecipeClients): Promise<PreferenceResult> {
  return runSupervised({ kind: 'dpo', beta: config.beta }, config, clients, config.adam);
}

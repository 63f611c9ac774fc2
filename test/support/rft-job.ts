/**
 * The small RFT job the end-to-end tests run (job views, the dashboard, REST jobs, full-parameter
 * RFT): three
 * prompts, an evaluator that scores longer answers higher, 4 candidates of at most 24 tokens
 * per prompt on the bundled byte-level model. Creates the dataset and the evaluator too (once
 * per stack: both are named after `jobId`).
 */
import { expect } from 'vitest';
import type { RestStack } from './rest-stack.js';

export const RFT_PROMPTS = ['What is the capital of Peru?', 'What color is snow?', 'What is 2+2?'];

/**
 * Creates the job in the stack's first account (its output model is `${jobId}-out`); `settings`
 * override the job body's (e.g. epochs, loraRank). Resolves with the job's REST path and the
 * create answer.
 */
export async function createRolloutJob(
  stack: RestStack,
  jobId: string,
  settings: Record<string, unknown> = {},
): Promise<{ path: string; created: Record<string, unknown> }> {
  await stack.uploadDataset(
    `${jobId}-prompts`,
    RFT_PROMPTS.map((q) => JSON.stringify({ messages: [{ role: 'user', content: q }] })).join('\n'),
  );
  const account = Object.keys(stack.keys)[0]!;
  const evaluator = await stack.call('POST', `/v1/accounts/${account}/evaluators`, {
    evaluatorId: `${jobId}-long-answers`,
    evaluator: {
      source: 'export default ({ completion }) => Math.min(1, completion.length / 40);',
      sourceFilename: 'score.js',
    },
  });
  expect(evaluator.status, JSON.stringify(evaluator.json)).toBe(200);
  const created = await stack.call(
    'POST',
    `/v1/accounts/${account}/reinforcementFineTuningJobs?reinforcementFineTuningJobId=${jobId}`,
    {
      baseModel: 'accounts/temper/models/byte-lm-3m',
      dataset: `accounts/${account}/datasets/${jobId}-prompts`,
      evaluator: `accounts/${account}/evaluators/${jobId}-long-answers`,
      outputModel: `accounts/${account}/models/${jobId}-out`,
      responseCandidatesCount: 4,
      maxTokens: 24,
      temperature: 1,
      loraRank: 4,
      ...settings,
    },
  );
  expect(created.status, JSON.stringify(created.json)).toBe(200);
  return {
    path: `/v1/accounts/${account}/reinforcementFineTuningJobs/${jobId}`,
    created: created.json,
  };
}

/**
 * The frozen teacher: a deployment of the teacher model on the recipe's registry, and the
 * logprobs it gives every token of a sequence (echoed prompt logprobs of a one-token request),
 * in target coordinates.
 */
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DeploymentRegistry } from '../../deployments/index.js';
import { DeploymentSampler } from '../../sdk/index.js';
import { modelDir } from '../kit/data.js';
import { RecipeError } from '../kit/errors.js';

export interface Teacher {
  /** log p_teacher(tokens[i+1] | tokens[..i]) for i in 0 … n−2. */
  score(tokens: readonly number[]): Promise<number[]>;
}

export async function openTeacher(
  registry: DeploymentRegistry,
  account: string,
  model: string,
  threads?: number,
): Promise<Teacher> {
  const dir = resolve(modelDir(model));
  const name = model.startsWith('accounts/')
    ? model
    : `accounts/${account}/models/${basename(dir)
        .toLowerCase()
        .replace(/[^a-z0-9-]/g, '-')}`;
  const d = await registry.create({
    account,
    deploymentId: 'distillation-teacher',
    baseModel: name,
    baseModelDir: dir,
    // a frozen teacher hot-loads nothing; the registry still wants a bucket
    hotLoad: { bucketUrl: pathToFileURL(dir).href },
    minReplicaCount: 1,
    maxReplicaCount: 1,
    replica: threads ? { threads } : {},
  });
  if (d.state !== 'READY' || !d.gatewayUrl)
    throw new RecipeError(`teacher deployment ${d.name} is ${d.state}: ${d.status.reason ?? ''}`);
  const sampler = new DeploymentSampler({
    inferenceUrl: d.gatewayUrl,
    deployment: d.name,
    model: d.baseModel,
    apiKey: registry.accessToken(d.name),
  });
  return {
    score: async (tokens) => {
      const [c] = await sampler.sampleWithTokens({
        promptTokens: [...tokens],
        maxTokens: 1,
        echo: true,
        logprobs: true,
        temperature: 1,
      });
      const lps = c?.inferenceLogprobs;
      if (!lps || lps.length < tokens.length - 1)
        throw new RecipeError('the teacher deployment returned no prompt logprobs');
      return lps.slice(0, tokens.length - 1);
    },
  };
}

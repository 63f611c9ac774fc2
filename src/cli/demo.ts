// `temper demo`: the first main job, before the platform exists. Fine-tunes the bundled base
// model on the bundled SFT dataset with a live loss, then samples from it before and after.
import { z } from 'zod';
import {
  BUNDLED_MODEL,
  catalogDatasetPath,
  catalogModelDir,
  DEMO_DATASET,
} from '../catalog/bundled.js';
import { readJsonl } from '../datasets/jsonl.js';
import { seededRandom } from '../datasets/synthetic.js';
import { TransformerModel } from '../engine/model.js';
import { adamW } from '../recipes/index.js';
import { conversationDatum, type Datum } from '../sdk/datums.js';
import { getRenderer, messagesSchema, type Renderer } from '../tokenizers/index.js';
import { loadModelTokenizer, modelRendererName } from '../tokenizers/model-files.js';
import { createProgress } from './progress.js';

export interface DemoOptions {
  model: string;
  dataset: string;
  steps: number;
  batchSize: number;
  learningRate: number;
  loraRank: number;
  threads?: number;
  seed: number;
}

export const DEMO_DEFAULTS: DemoOptions = {
  model: BUNDLED_MODEL.name,
  dataset: DEMO_DATASET.name,
  steps: 80,
  batchSize: 8,
  learningRate: 5e-4,
  loraRank: 0,
  seed: 0,
};

const PROMPTS = [
  'What is the capital of Peru?',
  'What is the capital of Japan?',
  'What color is the snow?',
];

const resolveModelDir = (m: string) => (m.startsWith('accounts/') ? catalogModelDir(m) : m);
const resolveDatasetPath = (d: string) => (d.startsWith('accounts/') ? catalogDatasetPath(d) : d);

export async function loadSftDataset(path: string, renderer: Renderer): Promise<Datum[]> {
  const rows = await readJsonl(path, z.object({ messages: messagesSchema }).passthrough());
  return rows.map((row) => conversationDatum(renderer, row.messages));
}

function answer(model: TransformerModel, renderer: Renderer, question: string): string {
  const prompt = renderer.renderGenerationPrompt([{ role: 'user', content: question }]);
  const { samples } = model.sample(prompt, {
    temperature: 0,
    maxTokens: 64,
    stopTokens: [...renderer.stopTokens],
  });
  return renderer.parseResponse(samples[0]!.tokens).message.content?.toString().trim() ?? '';
}

/** One SFT step on a batch: token-mean cross-entropy over the batch's trained tokens. */
function sftStep(model: TransformerModel, batch: Datum[], learningRate: number): number {
  const total = batch.reduce((n, d) => n + d.weights.reduce((a, b) => a + b, 0), 0);
  const weights = batch.flatMap((d) => d.weights.map((w) => w / total));
  const { loss } = model.forwardBackwardCrossEntropy(batch, weights);
  model.optimStep(adamW({ learningRate, gradClipNorm: 1 }));
  return loss;
}

export async function runDemo(
  opts: DemoOptions,
  log: (line: string) => void = console.log,
): Promise<{ losses: number[]; before: string[]; after: string[] }> {
  const dir = resolveModelDir(opts.model);
  const model = await TransformerModel.fromDirectory(dir, {
    threads: opts.threads,
    lora: opts.loraRank > 0 ? { rank: opts.loraRank, alpha: 2 * opts.loraRank } : undefined,
  });
  const renderer = getRenderer(await modelRendererName(dir), await loadModelTokenizer(dir));
  const data = await loadSftDataset(resolveDatasetPath(opts.dataset), renderer);
  log(
    `model    ${opts.model} (${model.lora ? `LoRA rank ${opts.loraRank}` : 'full fine-tuning'}, ${model.threads} threads, ${TransformerModel.simd()} kernels)`,
  );
  log(`dataset  ${opts.dataset} (${data.length} conversations)`);
  const before = PROMPTS.map((q) => answer(model, renderer, q));

  const rand = seededRandom(opts.seed);
  const order = data.map((_, i) => i);
  const losses: number[] = [];
  const progress = createProgress('fine-tuning', opts.steps);
  let cursor = order.length;
  for (let step = 0; step < opts.steps; step++) {
    const batch: Datum[] = [];
    while (batch.length < opts.batchSize) {
      if (cursor >= order.length) {
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [order[i], order[j]] = [order[j]!, order[i]!];
        }
        cursor = 0;
      }
      batch.push(data[order[cursor++]!]!);
    }
    losses.push(sftStep(model, batch, opts.learningRate));
    progress.update(step + 1, { loss: losses.at(-1)!.toFixed(4) });
  }
  progress.stop();
  const after = PROMPTS.map((q) => answer(model, renderer, q));
  log(`loss     ${losses[0]!.toFixed(4)} -> ${losses.at(-1)!.toFixed(4)}`);
  PROMPTS.forEach((q, i) => {
    log(`\nUser: ${q}`);
    log(`  before: ${before[i]}`);
    log(`  after:  ${after[i]}`);
  });
  return { losses, before, after };
}

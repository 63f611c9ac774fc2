#!/usr/bin/env -S npx tsx
// Pretrains the bundled base model `accounts/temper/models/byte-lm-3m`: a byte-level
// Llama-style transformer (~3M parameters) trained from a seeded random initialisation on the
// synthetic corpus of src/datasets/synthetic.ts. Deterministic for a given CPU kernel set
// (AVX2 or the portable one) whatever the thread count.
//
//   npx tsx scripts/pretrain-bundled-model.ts [--steps 600] [--threads N] [--out DIR]
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BUNDLED_MODEL, bundledModelDir } from '../src/catalog/bundled.js';
import { writeHfModelDir } from '../src/checkpoints/hf-model-dir.js';
import { pretrainingDocument, seededRandom } from '../src/datasets/synthetic.js';
import { countParameters, type ModelConfig } from '../src/engine/config.js';
import { initialWeights } from '../src/engine/init.js';
import { TransformerModel } from '../src/engine/model.js';
import { BYTE_MODEL_VOCAB_SIZE, createByteTokenizer } from '../src/tokenizers/index.js';
import { byteTokenizerFiles } from '../src/tokenizers/model-files.js';

const CONFIG: ModelConfig = {
  vocabSize: BYTE_MODEL_VOCAB_SIZE,
  hiddenSize: 256,
  intermediateSize: 704,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 64,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  maxPositions: 512,
  tieWordEmbeddings: true,
  qkNorm: true,
};

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '600' },
    threads: { type: 'string', default: String(availableParallelism()) },
    out: { type: 'string', default: bundledModelDir() },
    seed: { type: 'string', default: '1234' },
    'batch-seqs': { type: 'string', default: '16' },
    'seq-len': { type: 'string', default: '128' },
    lr: { type: 'string', default: '3e-3' },
  },
});
const steps = Number(args.steps);
const seqs = Number(args['batch-seqs']);
const seqLen = Number(args['seq-len']);
const peakLr = Number(args.lr);
const seed = Number(args.seed);

/** An endless stream of corpus tokens: documents separated by <|endoftext|>. */
function* tokenStream(r: () => number): Generator<number> {
  const tok = createByteTokenizer();
  for (;;) {
    for (const part of pretrainingDocument(r)) {
      if ('text' in part) yield* tok.encode(part.text);
      else yield tok.eosId;
    }
    yield tok.eosId;
  }
}

function nextBatch(stream: Generator<number>) {
  return Array.from({ length: seqs }, () => {
    const window = Array.from({ length: seqLen + 1 }, () => stream.next().value as number);
    return { tokens: window.slice(0, -1), targets: window.slice(1) };
  });
}

function learningRate(step: number): number {
  const warmup = Math.max(1, Math.round(steps * 0.05));
  if (step < warmup) return (peakLr * (step + 1)) / warmup;
  const progress = (step - warmup) / Math.max(1, steps - warmup);
  return peakLr * (0.1 + 0.45 * (1 + Math.cos(Math.PI * progress)));
}

async function main(): Promise<void> {
  const model = new TransformerModel(CONFIG, { threads: Number(args.threads) });
  model.loadTensors(initialWeights(model, seed));
  const train = tokenStream(seededRandom(seed + 1));
  const heldOut = nextBatch(tokenStream(seededRandom(seed + 2)));
  const tokensPerStep = seqs * seqLen;
  const evalLoss = () => -model.forward(heldOut).reduce((a, b) => a + b, 0) / (seqs * seqLen);
  console.log(
    `pretraining ${BUNDLED_MODEL.name}: ${countParameters(CONFIG).toLocaleString()} parameters, ${steps} steps x ${tokensPerStep} tokens, ${model.threads} threads`,
  );
  const started = Date.now();
  let last = 0;
  for (let step = 0; step < steps; step++) {
    const batch = nextBatch(train);
    const weights = new Array(tokensPerStep).fill(1 / tokensPerStep);
    const { loss } = model.forwardBackwardCrossEntropy(batch, weights);
    const { gradNorm } = model.optimStep({
      learningRate: learningRate(step),
      beta1: 0.9,
      beta2: 0.95,
      weightDecay: 0.1,
      gradClipNorm: 1,
    });
    last = loss;
    if (step % 25 === 0 || step === steps - 1) {
      const secs = (Date.now() - started) / 1000;
      console.log(
        `step ${String(step + 1).padStart(4)}/${steps}  loss ${loss.toFixed(4)}  grad_norm ${gradNorm.toFixed(3)}  lr ${learningRate(step).toExponential(2)}  ${Math.round(((step + 1) * tokensPerStep) / secs)} tok/s`,
      );
    }
  }
  const heldOutLoss = evalLoss();
  const seconds = (Date.now() - started) / 1000;
  console.log(
    `done in ${seconds.toFixed(0)} s: train loss ${last.toFixed(4)}, held-out loss ${heldOutLoss.toFixed(4)} nats/byte`,
  );

  const tok = createByteTokenizer();
  const out = resolve(args.out);
  await writeHfModelDir(out, {
    config: CONFIG,
    tensors: model.namedTensors(),
    dtype: 'BF16',
    generationConfig: {
      eos_token_id: tok.eosId,
      pad_token_id: tok.padId,
      max_new_tokens: 128,
      temperature: 1.0,
    },
    files: {
      ...byteTokenizerFiles(CONFIG.maxPositions),
      'temper_model.json': `${JSON.stringify(
        {
          name: BUNDLED_MODEL.name,
          kind: 'HF_BASE_MODEL',
          description: BUNDLED_MODEL.description,
          parameters: countParameters(CONFIG),
          pretraining: {
            script: 'scripts/pretrain-bundled-model.ts',
            corpus: 'src/datasets/synthetic.ts',
            seed,
            steps,
            tokens: steps * tokensPerStep,
            peak_learning_rate: peakLr,
            final_train_loss: Number(last.toFixed(4)),
            held_out_loss: Number(heldOutLoss.toFixed(4)),
            kernels: TransformerModel.simd(),
          },
        },
        null,
        2,
      )}\n`,
    },
  });
  console.log(`wrote ${join(out, 'model.safetensors')}`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

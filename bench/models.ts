// bench:models — the engine at real size: a Qwen3-0.6B-shaped model (28 layers, hidden 1024,
// head_dim 128, 16 q / 8 kv heads, intermediate 3072, vocab 151936, tied embeddings) with
// random bf16 weights written as safetensors, LoRA rank 16 on all seven projections, a batch
// of 4 x 512 tokens, the same thread count, in temper and in PyTorch + PEFT (fp32 compute,
// bench/torch_models.py) in the same run, each in its own process.
//
//   npm run bench:models [-- --threads N] [--steps S] [--quick] [--recompute] [--keep]
//
// Measured per process: tokens/s of a training step (forward + backward + AdamW; the median
// over the steps after the first, which warms caches and allocators), peak RSS (VmHWM of the
// process), and load time: from the parent's spawn of the process to being ready for the
// first step (interpreter start, imports, weights read, adapter and optimizer built). temper
// keeps the frozen base in bf16 (baseDtype 'bfloat16') and reads the file lazily
// (fromDirectory: header in JS, tensors pread by the engine into its own memory).
// If the kernel kills the anchor for memory at the whole batch, it runs again with gradient
// accumulation over 4 micro-batches of 1 x 512 (the same step); the JSON says so
// (torch_micro_batches, torch_oom_at_full_batch).
// The machine may be shared: the 1-minute load average before and after each process is
// printed and in the JSON; read the ratios with it.
//
// Human-readable lines first; the last line of stdout is one JSON object:
//   {"bench":"models","tokens_per_s_ratio":..,"peak_rss_ratio":..,"load_ratio":..}
// with tokens_per_s_ratio = temper/torch (goal >= 1), peak_rss_ratio = temper/torch (goal
// <= 0.6), load_ratio = temper/torch (goal <= 0.5), plus the raw figures.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeSafetensorsFile } from '../src/checkpoints/safetensors.js';
import { countParameters, type ModelConfig, toHfConfig } from '../src/engine/config.js';
import { type LoraTarget, TransformerModel } from '../src/engine/model.js';
import { baseTensorShapes } from '../src/engine/tensors.js';
import { median } from './support/common.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const PYTHON = join(process.env.HOME ?? '/root', '.cache', 'temper', 'pyref', 'bin', 'python');
const TORCH_SCRIPT = join(ROOT, 'bench', 'torch_models.py');

export const QWEN3_06B_SHAPE: ModelConfig = {
  vocabSize: 151936,
  hiddenSize: 1024,
  intermediateSize: 3072,
  numLayers: 28,
  numHeads: 16,
  numKvHeads: 8,
  headDim: 128,
  rmsNormEps: 1e-6,
  ropeTheta: 1000000,
  maxPositions: 40960,
  tieWordEmbeddings: true,
  qkNorm: true,
};
const LORA: { rank: number; alpha: number; targets: LoraTarget[] } = {
  rank: 16,
  alpha: 32,
  targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
};
const BATCH = 4;
const SEQ = 512;

const { values: argv } = parseArgs({
  options: {
    threads: { type: 'string' },
    steps: { type: 'string', default: '4' },
    quick: { type: 'boolean', default: false },
    /** temper: per-layer activation recompute (less memory, about one more forward) */
    recompute: { type: 'boolean', default: false },
    /** keep the generated model directory (1.2 GB in the temp dir) for the next run to reuse */
    keep: { type: 'boolean', default: false },
    // internal: the temper child process
    child: { type: 'string' },
    dir: { type: 'string' },
    'spawned-ms': { type: 'string' },
  },
});

const log = (line: string) => process.stdout.write(`${line}\n`);

function peakRssBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no VmHWM in /proc/self/status');
  return Number(m[1]) * 1024;
}

interface ChildResult {
  load_s: number;
  step_s: number[];
  loss: number[];
  peak_rss_bytes: number;
  sample_s?: number;
  sample_tokens?: number[];
}

// ---------------------------------------------------------------------------------------
// The temper side (a child process, so its RSS and load time are its own)
// ---------------------------------------------------------------------------------------

async function temperChild(dir: string, threads: number, steps: number, spawnedMs: number) {
  const model = await TransformerModel.fromDirectory(dir, {
    threads,
    lora: { ...LORA, seed: 0 },
    baseDtype: 'bfloat16',
    recompute: argv.recompute,
  });
  const batch = JSON.parse(readFileSync(join(dir, 'batch.json'), 'utf8')) as {
    tokens: number[][];
    targets: number[][];
  };
  const seqs = batch.tokens.map((tokens, i) => ({ tokens, targets: batch.targets[i]! }));
  const n = BATCH * SEQ;
  const weights = new Float32Array(n).fill(1 / n); // mean cross-entropy, as the anchor's
  const loadS = (Date.now() - spawnedMs) / 1000;
  const stepS: number[] = [];
  const loss: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t = performance.now();
    loss.push((await model.forwardBackwardCrossEntropyAsync(seqs, weights)).loss);
    await model.optimStepAsync({ learningRate: 1e-4, beta1: 0.9, beta2: 0.95 });
    stepS.push((performance.now() - t) / 1000);
  }
  // It samples too: 16 new tokens after a 32-token prompt, KV cache, the trained adapter on.
  const t = performance.now();
  const out = await model.sampleAsync(batch.tokens[0]!.slice(0, 32), {
    maxTokens: 16,
    temperature: 0,
  });
  const sampleS = (performance.now() - t) / 1000;
  const result: ChildResult = {
    load_s: loadS,
    step_s: stepS,
    loss,
    peak_rss_bytes: peakRssBytes(),
    sample_s: sampleS,
    sample_tokens: out.samples[0]!.tokens,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------------------------------
// The parent: the model directory, then each side in turn
// ---------------------------------------------------------------------------------------

/** xorshift32 uniform in [-1, 1): fast enough for 600M values. */
function uniform(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2147483648 - 1;
  };
}

async function writeModelDir(dir: string, threads: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const stamp = join(dir, 'complete');
  writeFileSync(join(dir, 'bench.json'), JSON.stringify({ ...LORA, threads }));
  if (existsSync(stamp)) return;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(toHfConfig(QWEN3_06B_SHAPE, 'qwen3')));
  const shapes = baseTensorShapes(QWEN3_06B_SHAPE);
  const specs = [...shapes].map(([name, shape]) => ({ name, shape }));
  const r = uniform(1234);
  // Uniform with std 0.02 (HF's initializer_range) for matrices, ones for norm weights.
  const amp = 0.02 * Math.sqrt(3);
  await writeSafetensorsFile(
    join(dir, 'model.safetensors'),
    specs,
    (name) => {
      const shape = shapes.get(name)!;
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      if (shape.length === 1) data.fill(1);
      else for (let i = 0; i < data.length; i++) data[i] = r() * amp;
      return data;
    },
    { dtype: 'BF16' },
  );
  const rt = uniform(99);
  const tokens: number[][] = [];
  const targets: number[][] = [];
  for (let b = 0; b < BATCH; b++) {
    const seq = Array.from({ length: SEQ + 1 }, () =>
      Math.floor(((rt() + 1) / 2) * QWEN3_06B_SHAPE.vocabSize),
    );
    tokens.push(seq.slice(0, SEQ));
    targets.push(seq.slice(1));
  }
  writeFileSync(join(dir, 'batch.json'), JSON.stringify({ tokens, targets }));
  writeFileSync(stamp, '');
}

/** A child killed by SIGKILL: on Linux, the kernel's OOM killer (or a person). */
class KilledError extends Error {
  constructor(cmd: string) {
    super(`${cmd} was killed (SIGKILL: out of memory, see dmesg)`);
  }
}

function runChild(cmd: string, args: string[]): Promise<ChildResult> {
  return new Promise((resolveChild, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (signal === 'SIGKILL') return reject(new KilledError(cmd));
      if (code !== 0) return reject(new Error(`${cmd} exited with ${code}: ${out.slice(-2000)}`));
      try {
        resolveChild(JSON.parse(last) as ChildResult);
      } catch {
        reject(new Error(`${cmd}: no JSON result in its output: ${out.slice(-2000)}`));
      }
    });
  });
}

// The anchor at the whole batch; if the kernel kills it for memory (PyTorch + PEFT in fp32
// needed more than 18 GB at 4x512 with a 150k vocabulary on the 24 GB machine), again with
// gradient accumulation over 4 micro-batches of 1x512 (the same step, less memory).
let torchMicroBatches = 1;
let torchOomAtFullBatch = false;
async function torchSide(dir: string, threads: number, steps: number): Promise<ChildResult> {
  for (const micro of [1, BATCH]) {
    torchMicroBatches = micro;
    try {
      return await runChild(PYTHON, [
        TORCH_SCRIPT,
        '--dir',
        dir,
        '--threads',
        String(threads),
        '--steps',
        String(steps),
        '--spawned-ms',
        String(Date.now()),
        '--micro-batches',
        String(micro),
      ]);
    } catch (err) {
      if (!(err instanceof KilledError) || micro === BATCH) throw err;
      torchOomAtFullBatch = true;
      log(
        `torch  killed at batch ${BATCH}x${SEQ} (out of memory); again with ${BATCH} micro-batches of 1x${SEQ}`,
      );
    }
  }
  throw new Error('unreachable');
}

async function main() {
  const threads = argv.threads ? Number(argv.threads) : availableParallelism();
  const steps = argv.quick ? 2 : Number(argv.steps);
  if (!Number.isInteger(threads) || threads < 1) throw new Error('--threads must be >= 1');
  if (!Number.isInteger(steps) || steps < 2)
    throw new Error('--steps must be >= 2 (the first is warm-up)');
  if (argv.child === 'temper') {
    await temperChild(argv.dir!, threads, steps, Number(argv['spawned-ms']));
    return;
  }
  if (!existsSync(PYTHON))
    throw new Error(`${PYTHON} is missing: scripts/setup.sh builds the Python reference venv`);
  const dir = join(tmpdir(), 'temper-bench-models-qwen3-0.6b');
  const t0 = performance.now();
  await writeModelDir(dir, threads);
  log(
    `model: Qwen3-0.6B shape, ${(countParameters(QWEN3_06B_SHAPE) / 1e6).toFixed(0)}M parameters, bf16 safetensors in ${dir} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  log(
    `batch ${BATCH}x${SEQ} tokens, LoRA rank ${LORA.rank} on ${LORA.targets.length} projections, ${threads} threads, ${steps} steps each (first is warm-up)`,
  );
  const load = () => loadavg()[0]!.toFixed(2);

  const sides: Record<string, { res: ChildResult; loadBefore: string; loadAfter: string }> = {};
  for (const side of ['temper', 'torch'] as const) {
    const loadBefore = load();
    const spawned = Date.now();
    const res =
      side === 'temper'
        ? await runChild(process.execPath, [
            '--import',
            'tsx',
            SELF,
            '--child',
            'temper',
            '--dir',
            dir,
            '--threads',
            String(threads),
            '--steps',
            String(steps),
            '--spawned-ms',
            String(spawned),
            ...(argv.recompute ? ['--recompute'] : []),
          ])
        : await torchSide(dir, threads, steps);
    sides[side] = { res, loadBefore, loadAfter: load() };
    const tps = (BATCH * SEQ) / median(res.step_s.slice(1));
    log(
      `${side.padEnd(6)} load ${res.load_s.toFixed(1)} s | steps ${res.step_s.map((s) => s.toFixed(1)).join(', ')} s -> ${tps.toFixed(1)} tokens/s | peak RSS ${(res.peak_rss_bytes / 2 ** 30).toFixed(2)} GiB | loss ${res.loss.map((l) => l.toFixed(4)).join(', ')} | load avg ${loadBefore} -> ${sides[side]!.loadAfter}`,
    );
    if (res.sample_s !== undefined)
      log(
        `       sampled 16 tokens in ${res.sample_s.toFixed(1)} s: [${res.sample_tokens!.join(', ')}]`,
      );
  }
  if (!argv.keep) rmSync(dir, { recursive: true, force: true });
  const t = sides.temper!.res;
  const p = sides.torch!.res;
  const tTps = (BATCH * SEQ) / median(t.step_s.slice(1));
  const pTps = (BATCH * SEQ) / median(p.step_s.slice(1));
  const round = (x: number) => Math.round(x * 1000) / 1000;
  log(
    JSON.stringify({
      bench: 'models',
      threads,
      steps,
      recompute: argv.recompute,
      torch_micro_batches: torchMicroBatches,
      torch_oom_at_full_batch: torchOomAtFullBatch,
      temper_tokens_per_s: round(tTps),
      torch_tokens_per_s: round(pTps),
      temper_peak_rss_gib: round(t.peak_rss_bytes / 2 ** 30),
      torch_peak_rss_gib: round(p.peak_rss_bytes / 2 ** 30),
      temper_load_s: round(t.load_s),
      torch_load_s: round(p.load_s),
      loadavg: {
        temper: [sides.temper!.loadBefore, sides.temper!.loadAfter],
        torch: [sides.torch!.loadBefore, sides.torch!.loadAfter],
      },
      tokens_per_s_ratio: round(tTps / pTps),
      peak_rss_ratio: round(t.peak_rss_bytes / p.peak_rss_bytes),
      load_ratio: round(t.load_s / p.load_s),
    }),
  );
}

await main();

// bench:engine — one training step (forward, backward, AdamW) of the same Llama-style model on
// the same batch with the same thread count in temper and in PyTorch (fp32, CPU), at about
// 3M and about 25M parameters, plus the engine's GEMM against OpenBLAS sgemm (numpy) at the
// shapes the model uses, twice: with the widest kernels (AVX-512 here) against OpenBLAS's own
// choice, and with the AVX2 kernels forced (TEMPER_SIMD=avx2, in a child process) against
// OpenBLAS's AVX2 kernels forced the same way (OPENBLAS_CORETYPE=Haswell): like for like, as
// AVX2 has half the FMA width. Per shape the OpenBLAS and temper timings alternate, so a change
// in the machine's load hits both. The anchors run in bench/torch_engine.py, in the same run.
//
//   npm run bench:engine [-- --threads N] [--steps S] [--warmup W] [--quick] [--max-wait SEC]
//                           [--torch-adamw fused|foreach] [--keep] [--gemm-only] [--no-avx2]
//
// The machine may be shared: before each measurement the bench waits (up to --max-wait s)
// until other processes use < 0.25 cores, times extra steps when some ran beside foreign
// load, takes the median over the quiet ones, and says "quiet": false in the JSON when it
// could not get enough of them (OpenMP anchors degrade far more than temper under contention).
//
// Human-readable lines first; the last line of stdout is one JSON object:
//   {"bench":"engine","threads":N,"torch_build":"..","configs":[{"params",..,"tokens_per_step",
//    "temper_tokens_per_s","torch_tokens_per_s","ratio"}],"gemm_gflops":..,"openblas_gflops":..,
//    "gemm_ratio":..,"gemm_avx2_gflops":..,"openblas_avx2_gflops":..,"gemm_avx2_ratio":..}
// ratio = temper_tokens_per_s / torch_tokens_per_s; the GEMM figures are geometric means
// over the shapes. Goals (issue 12): ratio >= 1.0 at both sizes, both GEMM ratios >= 0.95.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeSafetensors } from '../src/checkpoints/safetensors.js';
import { countParameters, type ModelConfig, toHfConfig } from '../src/engine/config.js';
import { initialWeights, standardNormal } from '../src/engine/init.js';
import { type Sequence, TransformerModel } from '../src/engine/model.js';
import { nativeEngine } from '../src/engine/native.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { median } from './support/common.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const VENV = '/root/.cache/temper/pyref';
const PYTHON = join(VENV, 'bin', 'python');
const TORCH_SCRIPT = join(ROOT, 'bench', 'torch_engine.py');
const REQUIREMENTS = join(ROOT, 'scripts', 'reference', 'requirements.txt');

const { values: argv } = parseArgs({
  options: {
    threads: { type: 'string' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    batch: { type: 'string', default: '8' },
    'seq-len': { type: 'string', default: '256' },
    /** most seconds to wait for other processes to go quiet before each measurement */
    'max-wait': { type: 'string', default: '60' },
    quick: { type: 'boolean', default: false },
    /** keep the temporary model directories (config.json, model.safetensors, batch.json) */
    keep: { type: 'boolean', default: false },
    /** the anchor's AdamW: 'fused' (the fastest stock path, default) or 'foreach' */
    'torch-adamw': { type: 'string', default: 'fused' },
    /** only the GEMM comparisons (no training steps) */
    'gemm-only': { type: 'boolean', default: false },
    /** skip the forced-AVX2 GEMM comparison */
    'no-avx2': { type: 'boolean', default: false },
    /** internal: run the GEMM comparison only and print its JSON (the AVX2 child) */
    'gemm-child': { type: 'boolean', default: false },
  },
});

const threads = argv.threads ? Number(argv.threads) : availableParallelism();
const steps = argv.quick ? 3 : Number(argv.steps);
const warmup = argv.quick ? 1 : Number(argv.warmup);
if (argv['torch-adamw'] !== 'fused' && argv['torch-adamw'] !== 'foreach')
  throw new Error(`--torch-adamw must be 'fused' or 'foreach' (got ${argv['torch-adamw']})`);
const batchSize = Number(argv.batch);
const seqLen = Number(argv['seq-len']);
const maxWait = Number(argv['max-wait']);
for (const [name, v] of Object.entries({ threads, steps, warmup, batchSize, seqLen }))
  if (!Number.isInteger(v) || v < (name === 'warmup' ? 0 : 1))
    throw new Error(`--${name} must be a positive integer (got ${v})`);

const log = (line: string) => process.stdout.write(`${line}\n`);

// --------------------------------------------------------------------------------------
// The Python anchor environment
// --------------------------------------------------------------------------------------

function venvHasTorch(): boolean {
  if (!existsSync(PYTHON)) return false;
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy, safetensors'], { stdio: 'ignore' });
  return r.status === 0;
}

function ensureVenv(): void {
  if (venvHasTorch()) return;
  log(
    `anchor env: ${VENV} lacks torch/numpy/safetensors; creating it (pip install -r scripts/reference/requirements.txt)`,
  );
  if (!existsSync(PYTHON)) execFileSync('python3', ['-m', 'venv', VENV], { stdio: 'inherit' });
  execFileSync(PYTHON, ['-m', 'pip', 'install', '--progress-bar', 'off', '-r', REQUIREMENTS], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (!venvHasTorch())
    throw new Error(`anchor env: ${PYTHON} still cannot import torch, numpy and safetensors`);
}

function runPython<T>(args: string[], extraEnv: Record<string, string> = {}): T {
  const env = {
    ...process.env,
    ...extraEnv,
    OMP_NUM_THREADS: String(threads),
    MKL_NUM_THREADS: String(threads),
    OPENBLAS_NUM_THREADS: String(threads),
  };
  const r = spawnSync(PYTHON, [TORCH_SCRIPT, ...args], {
    env,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0)
    throw new Error(`torch_engine.py ${args[0]} failed (exit ${r.status}):\n${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

// --------------------------------------------------------------------------------------
// Model, weights and batch (deterministic)
// --------------------------------------------------------------------------------------

interface BenchConfig {
  name: string;
  config: ModelConfig;
}

function llama(
  vocab: number,
  hidden: number,
  layers: number,
  heads: number,
  kvHeads: number,
  headDim: number,
  inter: number,
): ModelConfig {
  return {
    vocabSize: vocab,
    hiddenSize: hidden,
    intermediateSize: inter,
    numLayers: layers,
    numHeads: heads,
    numKvHeads: kvHeads,
    headDim,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    maxPositions: Math.max(2048, seqLen),
    tieWordEmbeddings: false,
    qkNorm: false,
  };
}

const CONFIGS: BenchConfig[] = [
  { name: '3M', config: llama(272, 256, 4, 4, 2, 64, 704) },
  { name: '25M', config: llama(272, 512, 8, 8, 4, 64, 1536) },
];

interface Batch {
  sequences: Sequence[];
  weights: Float32Array;
  tokens: number[][];
  targets: number[][];
  weightRows: number[][];
}

/** B sequences of L tokens; the first 16 positions of each are "prompt" (weight 0), the rest weight 1. */
function randomBatch(vocab: number, seed: number): Batch {
  const uniform = seededRandom(seed);
  const tokens: number[][] = [];
  const targets: number[][] = [];
  const weightRows: number[][] = [];
  for (let b = 0; b < batchSize; b++) {
    const seq = Array.from({ length: seqLen + 1 }, () => Math.floor(uniform() * vocab));
    tokens.push(seq.slice(0, seqLen));
    targets.push(seq.slice(1));
    weightRows.push(
      Array.from({ length: seqLen }, (_, i) => (i < Math.min(16, seqLen - 1) ? 0 : 1)),
    );
  }
  return {
    sequences: tokens.map((t, i) => ({ tokens: t, targets: targets[i]! })),
    weights: Float32Array.from(weightRows.flat()),
    tokens,
    targets,
    weightRows,
  };
}

const ADAM = {
  learningRate: 1e-4,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  gradClipNorm: 0,
};

// --------------------------------------------------------------------------------------
// A shared machine: measure what other processes take, wait for quiet, keep quiet samples
// --------------------------------------------------------------------------------------

/** Other processes may use at most this many cores during a timed sample. */
const QUIET_CORES = 0.25;
const CLK_TCK = 100; // USER_HZ, fixed at 100 on Linux/x86

function machineBusySeconds(): number {
  const v = readFileSync('/proc/stat', 'utf8')
    .split('\n', 1)[0]!
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  // user nice system idle iowait irq softirq steal
  return (v[0]! + v[1]! + v[2]! + v[5]! + v[6]! + v[7]!) / CLK_TCK;
}

function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Runs fn and returns its result with the cores other processes used meanwhile. */
function withLoad<T>(fn: () => T): { value: T; foreign: number } {
  const t0 = performance.now();
  const b0 = machineBusySeconds();
  const o0 = ownCpuSeconds();
  const value = fn();
  const wall = (performance.now() - t0) / 1e3;
  const foreign = Math.max(
    0,
    (machineBusySeconds() - b0 - (ownCpuSeconds() - o0)) / Math.max(wall, 1e-9),
  );
  return { value, foreign };
}

/** Runs fn until `want` samples ran on a quiet machine, or `max` samples ran at all. */
function timedSamples<T>(
  fn: () => T,
  want: number,
  max: number,
): { samples: T[]; foreign: number[]; use: T[]; quiet: boolean } {
  const samples: T[] = [];
  const foreign: number[] = [];
  while (samples.length < max) {
    const r = withLoad(fn);
    samples.push(r.value);
    foreign.push(r.foreign);
    if (foreign.filter((x) => x < QUIET_CORES).length >= want) break;
  }
  const quietSamples = samples.filter((_, i) => foreign[i]! < QUIET_CORES);
  const quiet = quietSamples.length >= want;
  // Foreign load only ever slows a sample down: the quiet ones, however few, are the better estimate.
  return { samples, foreign, use: quietSamples.length > 0 ? quietSamples : samples, quiet };
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Waits (up to --max-wait seconds) until other processes use less than QUIET_CORES for 2 s running. */
function waitQuiet(what: string): boolean {
  const deadline = performance.now() + maxWait * 1e3;
  let calm = 0;
  let said = false;
  for (;;) {
    const { foreign } = withLoad(() => sleepMs(500));
    calm = foreign < QUIET_CORES ? calm + 1 : 0;
    if (calm >= 4) return true;
    if (performance.now() > deadline) {
      log(
        `  WARNING: machine still busy before ${what} (other processes use ${foreign.toFixed(2)} cores); measuring anyway`,
      );
      return false;
    }
    if (!said && calm === 0) {
      log(
        `  waiting for a quiet machine before ${what}: other processes use ${foreign.toFixed(2)} cores (up to ${maxWait} s)`,
      );
      said = true;
    }
  }
}

interface TorchTrain {
  threads: number;
  adamw: string;
  step_s: number[];
  foreign_cores: number[];
  quiet: boolean;
  median_step_s: number;
  forward_s: number;
  backward_s: number;
  optim_s: number;
  losses: number[];
  params: number;
}

interface ConfigResult {
  name: string;
  params: number;
  tokens_per_step: number;
  temper_tokens_per_s: number;
  torch_tokens_per_s: number;
  ratio: number;
  temper_step_s: number;
  torch_step_s: number;
  quiet: boolean;
}

function describeSamples(seconds: number[], foreign: number[], quiet: boolean): string {
  const list = seconds
    .map(
      (s, i) =>
        `${s.toFixed(3)}${foreign[i]! >= QUIET_CORES ? `(busy ${foreign[i]!.toFixed(1)})` : ''}`,
    )
    .join(' ');
  const nQuiet = foreign.filter((x) => x < QUIET_CORES).length;
  const note = nQuiet > 0 ? `median of the ${nQuiet} quiet steps` : 'median over all';
  return `[steps: ${list}]${quiet ? '' : `  WARNING: too few quiet steps, ${note}`}`;
}

async function benchConfig(bc: BenchConfig, index: number): Promise<ConfigResult> {
  const { config } = bc;
  const params = countParameters(config);
  const dir = mkdtempSync(join(tmpdir(), `temper-bench-engine-${bc.name}-`));
  try {
    // The model both sides load: config.json + model.safetensors + the batch.
    const model = new TransformerModel(config, { threads });
    const weights = initialWeights(model, 1234 + index, { normJitter: 0.1 });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(toHfConfig(config, 'llama'), null, 2));
    await writeSafetensors(join(dir, 'model.safetensors'), weights);
    const batch = randomBatch(config.vocabSize, 99 + index);
    const tokensPerStep = batch.sequences.reduce((n, s) => n + s.tokens.length, 0);
    writeFileSync(
      join(dir, 'batch.json'),
      JSON.stringify({
        tokens: batch.tokens,
        targets: batch.targets,
        weights: batch.weightRows,
        adam: {
          lr: ADAM.learningRate,
          beta1: ADAM.beta1,
          beta2: ADAM.beta2,
          eps: ADAM.eps,
          weight_decay: ADAM.weightDecay,
        },
      }),
    );
    const loaded = await TransformerModel.fromDirectory(dir, { threads });
    log(
      `[${bc.name}] ${params.toLocaleString('en-US')} params (V${config.vocabSize} H${config.hiddenSize} I${config.intermediateSize} L${config.numLayers}, ${config.numHeads} heads / ${config.numKvHeads} kv, hd ${config.headDim}); batch ${batchSize}x${seqLen} = ${tokensPerStep} tokens; threads ${threads}`,
    );

    // temper, in-process: per-phase timings around the public API.
    const temperLosses: number[] = [];
    const step = (): [number, number, number, number] => {
      const t0 = performance.now();
      const logprobs = loaded.forward(batch.sequences, { saveForBackward: true });
      const t1 = performance.now();
      const d = new Float32Array(logprobs.length);
      let loss = 0;
      for (let j = 0; j < d.length; j++) {
        d[j] = -batch.weights[j]!;
        loss -= batch.weights[j]! * logprobs[j]!;
      }
      loaded.backward(d);
      const t2 = performance.now();
      loaded.optimStep(ADAM);
      const t3 = performance.now();
      temperLosses.push(loss);
      return [(t3 - t0) / 1e3, (t1 - t0) / 1e3, (t2 - t1) / 1e3, (t3 - t2) / 1e3];
    };
    for (let i = 0; i < warmup; i++) step();
    let quiet = waitQuiet(`temper ${bc.name}`);
    const t = timedSamples(step, steps, 3 * steps);
    quiet &&= t.quiet;
    const temperStep = median(t.use.map((x) => x[0]));
    log(
      `[${bc.name}] temper: step ${temperStep.toFixed(3)} s (forward ${median(t.use.map((x) => x[1])).toFixed(3)}, backward ${median(t.use.map((x) => x[2])).toFixed(3)}, adamw ${median(t.use.map((x) => x[3])).toFixed(3)}) -> ${(tokensPerStep / temperStep).toFixed(0)} tok/s  ${describeSamples(
        t.samples.map((x) => x[0]),
        t.foreign,
        t.quiet,
      )}`,
    );

    quiet = waitQuiet(`torch ${bc.name}`) && quiet;
    const torch = runPython<TorchTrain>([
      'train',
      '--dir',
      dir,
      '--threads',
      String(threads),
      '--warmup',
      String(warmup),
      '--steps',
      String(steps),
      '--max-steps',
      String(3 * steps),
      '--adamw',
      String(argv['torch-adamw']),
    ]);
    quiet &&= torch.quiet;
    if (torch.threads !== threads)
      throw new Error(
        `[${bc.name}] torch ran with ${torch.threads} threads, temper with ${threads}`,
      );
    if (torch.params !== params)
      throw new Error(`[${bc.name}] torch model has ${torch.params} parameters, temper ${params}`);
    log(
      `[${bc.name}] torch : step ${torch.median_step_s.toFixed(3)} s (forward ${torch.forward_s.toFixed(3)}, backward ${torch.backward_s.toFixed(3)}, adamw[${torch.adamw}] ${torch.optim_s.toFixed(3)}) -> ${(tokensPerStep / torch.median_step_s).toFixed(0)} tok/s  ${describeSamples(torch.step_s, torch.foreign_cores, torch.quiet)}`,
    );
    // Same model, same batch: the losses before each step must agree (float32 noise only).
    const n = Math.min(temperLosses.length, torch.losses.length, 3);
    const rel = Array.from(
      { length: n },
      (_, i) => Math.abs(temperLosses[i]! - torch.losses[i]!) / Math.abs(torch.losses[i]!),
    );
    log(
      `[${bc.name}] same-model check: loss temper ${temperLosses
        .slice(0, n)
        .map((x) => x.toFixed(4))
        .join(', ')} | torch ${torch.losses
        .slice(0, n)
        .map((x) => x.toFixed(4))
        .join(', ')} | max rel diff ${Math.max(...rel).toExponential(2)}`,
    );
    if (!(Math.max(...rel) < 1e-3))
      throw new Error(
        `[${bc.name}] temper and torch disagree on the loss: the two sides are not running the same model`,
      );

    const temperTps = tokensPerStep / temperStep;
    const torchTps = tokensPerStep / torch.median_step_s;
    return {
      name: bc.name,
      params,
      tokens_per_step: tokensPerStep,
      temper_tokens_per_s: round(temperTps, 1),
      torch_tokens_per_s: round(torchTps, 1),
      ratio: round(temperTps / torchTps, 3),
      temper_step_s: round(temperStep, 4),
      torch_step_s: round(torch.median_step_s, 4),
      quiet,
    };
  } finally {
    if (argv.keep) log(`[${bc.name}] kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

// --------------------------------------------------------------------------------------
// GEMM: the engine's matmul vs OpenBLAS sgemm (numpy)
// --------------------------------------------------------------------------------------

interface Shape {
  what: string;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
}

function gemmShapes(): Shape[] {
  const tokens = batchSize * seqLen;
  const shapes: Shape[] = [];
  for (const { name, config: c } of CONFIGS) {
    const H = c.hiddenSize;
    const I = c.intermediateSize;
    // forward X·Wᵀ (gate/up, q/o), backward dX = dY·W (down), weight grad dW = dYᵀ·X (gate/up)
    shapes.push({
      what: `${name} fwd gate/up  X·Wᵀ`,
      m: tokens,
      n: I,
      k: H,
      transA: false,
      transB: true,
    });
    shapes.push({
      what: `${name} fwd q/o      X·Wᵀ`,
      m: tokens,
      n: H,
      k: H,
      transA: false,
      transB: true,
    });
    shapes.push({
      what: `${name} bwd dX down  dY·W`,
      m: tokens,
      n: I,
      k: H,
      transA: false,
      transB: false,
    });
    shapes.push({
      what: `${name} bwd dW gate  dYᵀ·X`,
      m: I,
      n: H,
      k: tokens,
      transA: true,
      transB: false,
    });
  }
  shapes.push({ what: 'square 1024³', m: 1024, n: 1024, k: 1024, transA: false, transB: false });
  return shapes;
}

function temperGemm(s: Shape, minTime: number, trials: number): { gflops: number; quiet: boolean } {
  const { matmul } = nativeEngine();
  const u = seededRandom(7);
  const a = Float32Array.from({ length: s.m * s.k }, () => standardNormal(u));
  const b = Float32Array.from({ length: s.k * s.n }, () => standardNormal(u));
  const opts = { transA: s.transA, transB: s.transB, threads };
  matmul(s.m, s.n, s.k, a, b, { ...opts, repeat: 1 }); // warm-up: pool start, packing buffers
  const t0 = performance.now();
  matmul(s.m, s.n, s.k, a, b, { ...opts, repeat: 1 });
  const once = Math.max((performance.now() - t0) / 1e3, 1e-6);
  const repeat = Math.max(1, Math.floor(minTime / once));
  const t = timedSamples(
    () => {
      const t1 = performance.now();
      matmul(s.m, s.n, s.k, a, b, { ...opts, repeat });
      return (performance.now() - t1) / 1e3 / repeat;
    },
    trials,
    3 * trials,
  );
  return { gflops: (2 * s.m * s.n * s.k) / median(t.use) / 1e9, quiet: t.quiet };
}

interface GemmComparison {
  simd: string;
  openblas_core: string;
  temper_gflops: number;
  openblas_gflops: number;
  ratio: number;
  quiet: boolean;
}

/** OpenBLAS forced onto its AVX2 kernels when temper runs its AVX2 ones (like for like). */
function openblasEnvFor(simd: string): Record<string, string> {
  return simd === 'avx2-fma' ? { OPENBLAS_CORETYPE: 'Haswell' } : {};
}

/**
 * The engine's GEMM (this process's kernel set) against OpenBLAS on every shape; per shape
 * the OpenBLAS trials run first, then temper's, so both see about the same machine.
 */
function gemmComparison(): GemmComparison {
  const simd = nativeEngine().simd;
  const minTime = argv.quick ? 0.1 : 0.25;
  const trials = argv.quick ? 3 : 5;
  log(
    `GEMM [temper ${simd}] (GFLOP/s, fp32, median of trials)  m     n     k   temper  openblas  ratio`,
  );
  const temperG: number[] = [];
  const blasG: number[] = [];
  let quiet = true;
  let core = 'unknown';
  for (const s of gemmShapes()) {
    quiet = waitQuiet(`the GEMM ${s.m}x${s.n}x${s.k}`) && quiet;
    const ob = runPython<{ results: { gflops: number; quiet: boolean }[]; openblas_core: string }>(
      [
        'gemm',
        '--threads',
        String(threads),
        '--shapes',
        JSON.stringify([[s.m, s.n, s.k, s.transA ? 1 : 0, s.transB ? 1 : 0]]),
        '--min-time',
        String(minTime),
        '--trials',
        String(trials),
      ],
      openblasEnvFor(simd),
    );
    core = ob.openblas_core;
    const blas = ob.results[0]!;
    const r = temperGemm(s, minTime, trials);
    quiet &&= r.quiet && blas.quiet;
    temperG.push(r.gflops);
    blasG.push(blas.gflops);
    log(
      `  ${s.what.padEnd(36)} ${String(s.m).padStart(6)} ${String(s.n).padStart(5)} ${String(s.k).padStart(5)} ${r.gflops.toFixed(1).padStart(8)} ${blas.gflops.toFixed(1).padStart(9)} ${(r.gflops / blas.gflops).toFixed(2).padStart(6)}${r.quiet ? '' : '  (temper: busy machine)'}${blas.quiet ? '' : '  (openblas: busy machine)'}`,
    );
  }
  const gemm = geomean(temperG);
  const openblas = geomean(blasG);
  log(
    `  ${`geometric mean (OpenBLAS ${core})`.padEnd(36)} ${''.padStart(18)} ${gemm.toFixed(1).padStart(8)} ${openblas.toFixed(1).padStart(9)} ${(gemm / openblas).toFixed(2).padStart(6)}`,
  );
  return {
    simd,
    openblas_core: core,
    temper_gflops: round(gemm, 1),
    openblas_gflops: round(openblas, 1),
    ratio: round(gemm / openblas, 3),
    quiet,
  };
}

/** The same comparison in a child process whose engine is capped at AVX2 (TEMPER_SIMD=avx2). */
function avx2GemmComparison(): GemmComparison {
  const args = [
    '--import',
    'tsx',
    fileURLToPath(import.meta.url),
    '--gemm-child',
    '--threads',
    String(threads),
    '--max-wait',
    String(maxWait),
    ...(argv.quick ? ['--quick'] : []),
  ];
  const r = spawnSync(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, TEMPER_SIMD: 'avx2' },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 16 << 20,
  });
  if (r.status !== 0) throw new Error(`the AVX2 GEMM child failed (exit ${r.status})`);
  const lines = r.stdout.trim().split('\n');
  for (const line of lines.slice(0, -1)) log(line);
  const result = JSON.parse(lines[lines.length - 1]!) as GemmComparison;
  if (result.simd !== 'avx2-fma')
    throw new Error(`the AVX2 GEMM child ran the ${result.simd} kernels, not avx2-fma`);
  return result;
}

function geomean(xs: number[]): number {
  return Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

// --------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (argv['gemm-child']) {
    const g = gemmComparison();
    process.stdout.write(`${JSON.stringify(g)}\n`);
    return;
  }
  const started = performance.now();
  ensureVenv();
  const info = runPython<{ torch_build: string; numpy_blas: string; numpy_version: string }>([
    'info',
  ]);
  log(
    `bench:engine  threads=${threads}  temper simd=${nativeEngine().simd}  anchor: ${info.torch_build}; GEMM anchor numpy ${info.numpy_version} -> ${info.numpy_blas}`,
  );
  log(
    `load average before start: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} (other processes on this machine skew both sides)`,
  );
  log(
    `methodology: ${warmup} warm-up steps, then median of ${steps} timed steps; loss = -sum(w*logprob); AdamW lr ${ADAM.learningRate} wd ${ADAM.weightDecay}`,
  );

  const configs: ConfigResult[] = [];
  if (!argv['gemm-only'])
    for (const [i, bc] of CONFIGS.entries()) configs.push(await benchConfig(bc, i));

  const gemm = gemmComparison();
  const avx2 = argv['no-avx2'] ? undefined : avx2GemmComparison();

  const verdict = (ok: boolean, quiet: boolean) =>
    !quiet ? 'not judged, measured on a busy machine' : ok ? 'met' : 'NOT met';
  for (const c of configs)
    log(
      `[${c.name}] ratio temper/torch = ${c.ratio.toFixed(2)} (goal >= 1.0: ${verdict(c.ratio >= 1.0, c.quiet)})`,
    );
  for (const g of [gemm, ...(avx2 ? [avx2] : [])])
    log(
      `GEMM temper ${g.simd} / openblas ${g.openblas_core} = ${g.ratio.toFixed(2)} (goal >= 0.95: ${verdict(g.ratio >= 0.95, g.quiet)})`,
    );
  const quiet = gemm.quiet && (avx2?.quiet ?? true) && configs.every((c) => c.quiet);
  if (!quiet)
    log(
      'WARNING: other processes were busy during part of this run (see "busy" marks); OpenMP/OpenBLAS anchors degrade far more than temper under contention, so the ratios are not trustworthy',
    );
  log(`bench took ${((performance.now() - started) / 1e3).toFixed(0)} s`);

  const result = {
    bench: 'engine',
    threads,
    torch_build: info.torch_build,
    configs,
    gemm_gflops: gemm.temper_gflops,
    openblas_gflops: gemm.openblas_gflops,
    gemm_ratio: gemm.ratio,
    openblas_core: gemm.openblas_core,
    gemm_avx2_gflops: avx2?.temper_gflops ?? null,
    openblas_avx2_gflops: avx2?.openblas_gflops ?? null,
    gemm_avx2_ratio: avx2?.ratio ?? null,
    openblas_avx2_core: avx2?.openblas_core ?? null,
    gemm_blas: info.numpy_blas,
    temper_simd: nativeEngine().simd,
    quiet,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:engine failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});

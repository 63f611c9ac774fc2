// bench:losses — GRPO with a k3 reference KL and token-level TIS weights, forward and backward,
// over 64 sequences × 2048 tokens, in temper (src/losses, float64) and in PyTorch on the CPU
// (bench/torch_losses.py, same batch, same run).
//
//   npm run bench:losses [-- --sequences B] [--tokens T] [--steps S] [--warmup W]
//                        [--torch-threads N] [--torch-dtype float32|float64] [--quick]
//
// The anchor is the per-datum list form of the loss — one requires_grad tensor per datum and a
// loop over datums, which is how forward_backward_custom hands logprobs to a loss — timed with
// the same thread count as temper (1). The padded single-tensor form is timed too and reported
// as torch_batched_ms. Both sides compute the same metrics; the gradients are compared.
//
// Human-readable lines first; the last line of stdout is one JSON object:
//   {"bench":"losses","tokens":..,"temper_ms":..,"torch_ms":..,"ratio":.., ...}
// with ratio = temper_ms / torch_ms (median milliseconds per forward+backward; lower is better).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { forwardBackward, grpoLoss, type LossDatum } from '../src/losses/index.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { median } from './support/common.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PYTHON = '/root/.cache/temper/pyref/bin/python';
const TORCH_SCRIPT = join(ROOT, 'bench', 'torch_losses.py');

const { values: argv } = parseArgs({
  options: {
    sequences: { type: 'string', default: '64' },
    tokens: { type: 'string', default: '2048' },
    steps: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '10' },
    'torch-threads': { type: 'string', default: '1' },
    'torch-dtype': { type: 'string', default: 'float32' },
    quick: { type: 'boolean', default: false },
  },
});

const B = Number(argv.sequences);
const T = Number(argv.tokens);
const steps = argv.quick ? 5 : Number(argv.steps);
const warmup = argv.quick ? 2 : Number(argv.warmup);
const torchThreads = Number(argv['torch-threads']);
const torchDtype = argv['torch-dtype'];
for (const [name, v] of Object.entries({ B, T, steps, warmup, torchThreads })) {
  if (!Number.isInteger(v) || v < 1)
    throw new Error(`--${name} must be a positive integer (got ${v})`);
}
if (torchDtype !== 'float32' && torchDtype !== 'float64') {
  throw new Error('--torch-dtype must be float32 or float64');
}

const log = (line: string) => process.stdout.write(`${line}\n`);
const CONFIG = { eps_clip: 0.2, kl_beta: 0.001, tis_cap: 5 };

// ---------------------------------------------------------------------------------------
// A deterministic batch shaped like real rollouts
// ---------------------------------------------------------------------------------------

interface Batch {
  lp: Float64Array[];
  old: Float64Array[];
  rollout: Float64Array[];
  ref: Float64Array[];
  mask: Float64Array[];
  adv: Float64Array;
}

/**
 * Logprobs mostly near 0 with a tail; the old policy a small step away (about a tenth of the
 * ratios outside the clip), the sampler slightly off the trainer (TIS weights near 1, a few
 * capped), the reference further away; prompts of 64-512 tokens masked out.
 */
function makeBatch(): Batch {
  const r = seededRandom(2048);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const b: Batch = { lp: [], old: [], rollout: [], ref: [], mask: [], adv: new Float64Array(B) };
  for (let i = 0; i < B; i++) {
    const lp = new Float64Array(T);
    const old = new Float64Array(T);
    const rollout = new Float64Array(T);
    const ref = new Float64Array(T);
    const mask = new Float64Array(T);
    const prompt = 64 + Math.floor(r() * 448);
    for (let j = 0; j < T; j++) {
      lp[j] = -Math.abs(gauss()) * 1.5 - 0.01;
      old[j] = lp[j]! + gauss() * 0.12;
      rollout[j] = old[j]! + gauss() * 0.05 - (r() < 0.01 ? 2 : 0);
      ref[j] = lp[j]! + gauss() * 0.3;
      mask[j] = j < prompt ? 0 : 1;
    }
    b.lp.push(lp);
    b.old.push(old);
    b.rollout.push(rollout);
    b.ref.push(ref);
    b.mask.push(mask);
    b.adv[i] = gauss();
  }
  return b;
}

function writeBatch(dir: string, b: Batch): void {
  const rows = (xs: Float64Array[]) => {
    const out = new Float64Array(B * T);
    xs.forEach((x, i) => {
      out.set(x, i * T);
    });
    return Buffer.from(out.buffer);
  };
  writeFileSync(join(dir, 'lp.bin'), rows(b.lp));
  writeFileSync(join(dir, 'old.bin'), rows(b.old));
  writeFileSync(join(dir, 'rollout.bin'), rows(b.rollout));
  writeFileSync(join(dir, 'ref.bin'), rows(b.ref));
  writeFileSync(join(dir, 'mask.bin'), rows(b.mask));
  writeFileSync(join(dir, 'adv.bin'), Buffer.from(b.adv.buffer));
  writeFileSync(
    join(dir, 'meta.json'),
    JSON.stringify({ sequences: B, tokens: T, config: CONFIG }),
  );
}

// ---------------------------------------------------------------------------------------
// temper
// ---------------------------------------------------------------------------------------

function runTemper(b: Batch) {
  const loss = grpoLoss({
    epsClip: CONFIG.eps_clip,
    klBeta: CONFIG.kl_beta,
    tis: { cap: CONFIG.tis_cap, level: 'token' },
  });
  const data: LossDatum[] = b.lp.map((_, i) => ({
    loss_fn_inputs: {
      weights: b.mask[i]!,
      logprobs: b.rollout[i]!,
      old_logprobs: b.old[i]!,
      ref_logprobs: b.ref[i]!,
      advantages: b.adv.subarray(i, i + 1),
    },
  }));
  const step = () => forwardBackward(loss, data, b.lp);
  for (let k = 0; k < warmup; k++) step();
  const samples: number[] = [];
  let last = step();
  for (let k = 0; k < steps; k++) {
    const t0 = performance.now();
    last = step();
    samples.push(performance.now() - t0);
  }
  return { ms: median(samples), result: last };
}

// ---------------------------------------------------------------------------------------
// PyTorch
// ---------------------------------------------------------------------------------------

interface TorchResult {
  list_ms: number;
  batched_ms: number;
  loss: number;
  metrics: Record<string, number>;
  threads: number;
  dtype: string;
  torch: string;
}

function runTorch(dir: string): TorchResult {
  if (!existsSync(PYTHON))
    throw new Error(`anchor env: ${PYTHON} not found (needs torch and numpy)`);
  const env = {
    ...process.env,
    OMP_NUM_THREADS: String(torchThreads),
    MKL_NUM_THREADS: String(torchThreads),
    OPENBLAS_NUM_THREADS: String(torchThreads),
  };
  const args = [TORCH_SCRIPT, dir, '--steps', String(steps), '--warmup', String(warmup)];
  args.push('--threads', String(torchThreads), '--dtype', torchDtype!);
  const r = spawnSync(PYTHON, args, { env, encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`torch_losses.py failed (exit ${r.status}):\n${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as TorchResult;
}

// ---------------------------------------------------------------------------------------

const batch = makeBatch();
const dir = mkdtempSync(join(tmpdir(), 'temper-bench-losses-'));
try {
  writeBatch(dir, batch);
  log(`bench:losses  GRPO (ε 0.2, k3 KL β ${CONFIG.kl_beta}, token TIS cap ${CONFIG.tis_cap})`);
  log(`batch: ${B} sequences × ${T} tokens = ${B * T} tokens; steps ${steps}, warmup ${warmup}`);

  const temper = runTemper(batch);
  const torch = runTorch(dir);

  // Parity: gradients against torch's list variant, loss and metrics side by side.
  const tg = new Float64Array(readFileSync(join(dir, 'torch_grads.bin')).buffer.slice(0));
  let maxAbs = 0;
  let maxRef = 0;
  temper.result.grads.forEach((g, i) => {
    for (let j = 0; j < T; j++) {
      maxAbs = Math.max(maxAbs, Math.abs(g[j]! - tg[i * T + j]!));
      maxRef = Math.max(maxRef, Math.abs(tg[i * T + j]!));
    }
  });
  const lossRel = Math.abs(temper.result.loss - torch.loss) / Math.abs(torch.loss);
  log(
    `parity: loss temper ${temper.result.loss.toFixed(6)} torch ${torch.loss.toFixed(6)} (rel ${lossRel.toExponential(2)})`,
  );
  log(
    `        max |grad diff| ${maxAbs.toExponential(2)} (max |grad| ${maxRef.toFixed(4)}; both float64)`,
  );
  for (const [k, v] of Object.entries(torch.metrics)) {
    log(
      `        ${k.padEnd(22)} temper ${temper.result.metrics[k]?.toFixed(6)}  torch ${v.toFixed(6)}`,
    );
  }
  log(`temper (node ${process.version}, float64, 1 thread): ${temper.ms.toFixed(2)} ms`);
  log(
    `torch ${torch.torch} (${torch.dtype}, ${torch.threads} thread): per-datum list ${torch.list_ms.toFixed(2)} ms, batched [B,T] ${torch.batched_ms.toFixed(2)} ms`,
  );

  const round = (x: number, d = 3) => Number(x.toFixed(d));
  log(
    JSON.stringify({
      bench: 'losses',
      tokens: B * T,
      temper_ms: round(temper.ms),
      torch_ms: round(torch.list_ms),
      ratio: round(temper.ms / torch.list_ms),
      torch_batched_ms: round(torch.batched_ms),
      ratio_vs_batched: round(temper.ms / torch.batched_ms),
      torch_threads: torch.threads,
      torch_dtype: torch.dtype,
      max_grad_abs_diff: Number(maxAbs.toExponential(3)),
    }),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}

// bench:checkpoints — how small arc_v2 deltas are, how fast they encode and decode, and how
// fast DCP train-state checkpoints save and load, each next to its anchor, in the same run.
//
//   npm run bench:checkpoints [-- --steps 10] [--batch 4] [--seq-len 256] [--quick]
//                             [--dcp-only] [--rounds N]
//
// For the bundled model (byte-lm-3m) and a ~25M-parameter model of the same family:
// - export the weights as a sampler export would (HF safetensors, bfloat16 — what the
//   reference serves and hot-loads; float32 is reported beside it), then train with
//   forwardBackwardCrossEntropy + optimStep (AdamW, lr 1e-5) on synthetic-corpus bytes and
//   export again after 1 and after 10 steps;
// - delta ratio = full export size / arc_v2 delta size (delta against the step-0 export,
//   as a base → delta chain does); anchors: zstd (level 3, the level arc_v2 uses) of the
//   raw new weights, and the reference platform's published ~10x (SDK docs) / ~20x
//   ("typically 20x+") for its deltas;
// - delta encode and decode speed in MB/s of full export bytes (25M model, 1-step delta,
//   best of 3; zstd on the thread pool as snapshot writers run it, one-thread figures beside);
// - DCP save/load (src/checkpoints/dcp, file:// store with fsync, weights + AdamW moments of
//   the 25M model as zero-copy engine views, as the trainer saves them) against the same
//   bytes written by a plain careful writer (one write per tensor, in order, to a temporary
//   file; fsync; rename into place; fsync of the directory) and read back by readFile. Rounds
//   interleave the two (alternating which goes first); the ratios are medians of per-round
//   ratios (`--rounds`, default 15, 7 with --quick; `--dcp-only` runs just this part).
//
// Human-readable lines first; the last line of stdout is one JSON object:
//   {"bench":"checkpoints","delta_ratio_1step":..,"delta_ratio_10step":..,"zstd_ratio":..,
//    "encode_mb_s":..,"decode_mb_s":..,"dcp_save_vs_raw":..,"dcp_load_vs_raw":..,"models":[..]}
// entropy_bound_1step is the order-0 entropy limit of the 1-step XOR (how far any coder that
// treats elements independently could go): at lr 1e-5 a quarter of the 25M model's bf16
// weights change in one step, so no arc_v2 encoder can approach 20x there.
// The headline ratios are the smaller of the two models' bfloat16 figures; dcp_*_vs_raw are
// DCP throughput / plain throughput (1.0 = as fast as writing the bytes yourself).

import { mkdtempSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DcpCheckpoints, trainStateTensors } from '../src/checkpoints/dcp/index.js';
import {
  applyDeltaFile,
  applyDeltaFileAsync,
  encodeDeltaFile,
  encodeDeltaFileAsync,
  parseRawSafetensors,
} from '../src/checkpoints/deltas/index.js';
import { zstdCompress } from '../src/checkpoints/deltas/zstd.js';
import { openObjectStore } from '../src/checkpoints/object-store/index.js';
import { serializeSafetensors } from '../src/checkpoints/safetensors.js';
import { pretrainingDocument } from '../src/datasets/synthetic.js';
import { countParameters } from '../src/engine/config.js';
import { initialWeights } from '../src/engine/init.js';
import { type Sequence, TransformerModel } from '../src/engine/model.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { LLAMA_25M, median } from './support/common.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BUNDLED = join(ROOT, 'catalog', 'accounts', 'temper', 'models', 'byte-lm-3m');

const { values: argv } = parseArgs({
  options: {
    steps: { type: 'string', default: '10' },
    batch: { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '256' },
    quick: { type: 'boolean', default: false },
    /** Only the DCP save/load part (on the ~25M model after one AdamW step). */
    'dcp-only': { type: 'boolean', default: false },
    /** Interleaved DCP rounds (default 15, 7 with --quick). */
    rounds: { type: 'string' },
  },
});
const STEPS = Number(argv.steps);
const BATCH = Number(argv.batch);
const SEQ = Number(argv['seq-len']);
const LR = 1e-5;
const ADAM = {
  learningRate: LR,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  gradClipNorm: 1,
};
/** The reference platform's published delta ratios (SDK docs: ~10x; RL docs: typically 20x+). */
const REFERENCE_RATIOS = [10, 20];

const log = (line: string) => process.stdout.write(`${line}\n`);
const mb = (bytes: number) => bytes / 1e6;
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** Byte-token batches from the synthetic pretraining corpus (deterministic). */
function batches(count: number, seed: number): { sequences: Sequence[]; weights: Float32Array }[] {
  const r = seededRandom(seed);
  let text = '';
  const need = count * BATCH * (SEQ + 1);
  while (text.length < need)
    for (const part of pretrainingDocument(r)) text += 'text' in part ? part.text : '\n';
  const bytes = Buffer.from(text, 'utf8');
  const out: { sequences: Sequence[]; weights: Float32Array }[] = [];
  let at = 0;
  for (let b = 0; b < count; b++) {
    const sequences: Sequence[] = [];
    for (let s = 0; s < BATCH; s++) {
      const seq = Array.from(bytes.subarray(at, at + SEQ + 1));
      at += SEQ + 1;
      sequences.push({ tokens: seq.slice(0, SEQ), targets: seq.slice(1) });
    }
    out.push({ sequences, weights: new Float32Array(BATCH * SEQ).fill(1 / (BATCH * SEQ)) });
  }
  return out;
}

function exportWeights(model: TransformerModel, dtype: 'BF16' | 'F32'): Buffer {
  return serializeSafetensors(model.namedTensors(), { dtype, metadata: { format: 'pt' } });
}

/**
 * What any coder of the XOR that treats elements independently could reach at best: bits of
 * the export per element / order-0 entropy of the XOR's 16-bit symbols (bf16 files).
 */
function entropyBoundRatio(prevFile: Buffer, nextFile: Buffer): number {
  const prev = parseRawSafetensors(prevFile, 'prev');
  const next = parseRawSafetensors(nextFile, 'next');
  const counts = new Float64Array(65536);
  let n = 0;
  for (const e of next.entries) {
    const p = prev.byName.get(e.name)!;
    const a = prevFile.subarray(prev.dataStart + p.begin, prev.dataStart + p.end);
    const b = nextFile.subarray(next.dataStart + e.begin, next.dataStart + e.end);
    for (let i = 0; i + 1 < a.length; i += 2) {
      counts[(a[i]! ^ b[i]!) | ((a[i + 1]! ^ b[i + 1]!) << 8)]! += 1;
      n++;
    }
  }
  let bits = 0;
  for (const c of counts) if (c > 0) bits -= (c / n) * Math.log2(c / n);
  return bits > 0 ? (nextFile.length * 8) / (n * bits) : Infinity;
}

function time<T>(fn: () => T): { value: T; seconds: number } {
  const t = performance.now();
  const value = fn();
  return { value, seconds: (performance.now() - t) / 1000 };
}

async function timeAsync<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const t = performance.now();
  const value = await fn();
  return { value, seconds: (performance.now() - t) / 1000 };
}

interface ModelResult {
  model: string;
  params: number;
  full_bytes_bf16: number;
  full_bytes_f32: number;
  delta_bytes_1step_bf16: number;
  delta_bytes_10step_bf16: number;
  delta_ratio_1step: number;
  delta_ratio_10step: number;
  delta_ratio_1step_f32: number;
  delta_ratio_10step_f32: number;
  /** The best ratio an element-independent coder of the 1-step XOR could reach. */
  entropy_bound_1step: number;
  zstd_ratio: number;
  zstd_ratio_f32: number;
  encode_mb_s: number;
  decode_mb_s: number;
  encode_mb_s_one_thread: number;
  decode_mb_s_one_thread: number;
  losses: number[];
}

async function benchModel(name: string, model: TransformerModel): Promise<ModelResult> {
  const params = model.tensorInfo().reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
  log(
    `\n${name}: ${(params / 1e6).toFixed(2)}M parameters, ${STEPS} AdamW steps at lr ${LR}, batch ${BATCH}x${SEQ}`,
  );
  const base = { bf16: exportWeights(model, 'BF16'), f32: exportWeights(model, 'F32') };
  const data = batches(STEPS, 42);
  const after: Record<number, { bf16: Buffer; f32: Buffer }> = {};
  const losses: number[] = [];
  for (let step = 1; step <= STEPS; step++) {
    const { sequences, weights } = data[step - 1]!;
    const { loss } = model.forwardBackwardCrossEntropy(sequences, weights);
    model.optimStep(ADAM);
    losses.push(round(loss, 4));
    if (step === 1 || step === STEPS)
      after[step] = { bf16: exportWeights(model, 'BF16'), f32: exportWeights(model, 'F32') };
  }
  const one = after[1]!;
  const last = after[STEPS]!;
  // Best of a few runs (the machine may be shared): one thread, and with the zstd work on
  // the thread pool (what snapshot writers use).
  const reps = argv.quick ? 1 : 3;
  let enc1 = time(() => encodeDeltaFile(base.bf16, one.bf16));
  let dec1 = time(() => applyDeltaFile(base.bf16, enc1.value.file));
  let encPool = Infinity;
  let decPool = Infinity;
  for (let i = 0; i < reps; i++) {
    if (i > 0) {
      const e = time(() => encodeDeltaFile(base.bf16, one.bf16));
      if (e.seconds < enc1.seconds) enc1 = e;
      const d = time(() => applyDeltaFile(base.bf16, enc1.value.file));
      if (d.seconds < dec1.seconds) dec1 = d;
    }
    const ep = await timeAsync(() => encodeDeltaFileAsync(base.bf16, one.bf16));
    if (!ep.value.file.equals(enc1.value.file))
      throw new Error(`${name}: pooled and one-thread deltas differ`);
    encPool = Math.min(encPool, ep.seconds);
    const dp = await timeAsync(() => applyDeltaFileAsync(base.bf16, enc1.value.file));
    if (!dp.value.equals(one.bf16))
      throw new Error(`${name}: the pooled decode did not reconstruct the export`);
    decPool = Math.min(decPool, dp.seconds);
  }
  if (!dec1.value.equals(one.bf16))
    throw new Error(`${name}: the 1-step delta did not reconstruct the export`);
  const d10 = encodeDeltaFile(base.bf16, last.bf16).file;
  if (!applyDeltaFile(base.bf16, d10).equals(last.bf16))
    throw new Error(`${name}: the ${STEPS}-step delta did not reconstruct`);
  const f1 = encodeDeltaFile(base.f32, one.f32).file;
  const f10 = encodeDeltaFile(base.f32, last.f32).file;
  const zstd = zstdCompress(one.bf16).length;
  const zstdF32 = zstdCompress(one.f32).length;
  const r: ModelResult = {
    model: name,
    params,
    full_bytes_bf16: one.bf16.length,
    full_bytes_f32: one.f32.length,
    delta_bytes_1step_bf16: enc1.value.file.length,
    delta_bytes_10step_bf16: d10.length,
    delta_ratio_1step: round(one.bf16.length / enc1.value.file.length),
    delta_ratio_10step: round(last.bf16.length / d10.length),
    delta_ratio_1step_f32: round(one.f32.length / f1.length),
    delta_ratio_10step_f32: round(last.f32.length / f10.length),
    entropy_bound_1step: round(entropyBoundRatio(base.bf16, one.bf16)),
    zstd_ratio: round(one.bf16.length / zstd),
    zstd_ratio_f32: round(one.f32.length / zstdF32),
    encode_mb_s: round(mb(one.bf16.length) / encPool, 1),
    decode_mb_s: round(mb(one.bf16.length) / decPool, 1),
    encode_mb_s_one_thread: round(mb(one.bf16.length) / enc1.seconds, 1),
    decode_mb_s_one_thread: round(mb(one.bf16.length) / dec1.seconds, 1),
    losses,
  };
  log(
    `  full export: ${mb(r.full_bytes_bf16).toFixed(2)} MB bf16, ${mb(r.full_bytes_f32).toFixed(2)} MB f32`,
  );
  log(
    `  arc_v2 delta after 1 step:  ${mb(r.delta_bytes_1step_bf16).toFixed(3)} MB  -> ${r.delta_ratio_1step}x (bf16), ${r.delta_ratio_1step_f32}x (f32)`,
  );
  log(
    `  arc_v2 delta after ${STEPS} steps: ${mb(r.delta_bytes_10step_bf16).toFixed(3)} MB  -> ${r.delta_ratio_10step}x (bf16), ${r.delta_ratio_10step_f32}x (f32)`,
  );
  log(
    `  order-0 entropy bound for the 1-step bf16 delta: ${r.entropy_bound_1step}x (no coder of the XOR that treats elements independently can do better)`,
  );
  log(
    `  anchor zstd -3 of the new weights: ${r.zstd_ratio}x (bf16), ${r.zstd_ratio_f32}x (f32); reference platform: ~${REFERENCE_RATIOS.join('x / ~')}x`,
  );
  log(
    `  delta encode ${r.encode_mb_s} MB/s, decode ${r.decode_mb_s} MB/s of export bytes (one thread: ${r.encode_mb_s_one_thread} / ${r.decode_mb_s_one_thread}); losses ${losses.join(' ')}`,
  );
  return r;
}

/**
 * The anchor for DCP save: what a plain careful writer does with the same bytes: write them
 * sequentially, one write per tensor straight from the engine's memory, into a temporary file
 * in the target directory, fsync it, rename it into place and fsync the directory (the same
 * durability and atomicity a committed DCP shard gets).
 */
async function plainCarefulWrite(path: string, tensors: readonly Float32Array[]): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'wx');
  for (const t of tensors) {
    const bytes = new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
    for (let at = 0; at < bytes.byteLength; )
      at += (await fh.write(bytes, at, bytes.byteLength - at)).bytesWritten;
  }
  await fh.sync();
  await fh.close();
  await rename(tmp, path);
  const dirHandle = await open(dirname(path), 'r');
  await dirHandle.sync();
  await dirHandle.close();
}

/**
 * DCP save/load of weights + AdamW moments (zero-copy engine views, as the trainer saves them)
 * against a plain careful write (plainCarefulWrite) / a plain readFile of the same bytes.
 * Rounds interleave the two, alternating which goes first; each round gives one ratio and the
 * result is the median ratio (the machine is shared, so single timings are noisy).
 */
async function benchDcp(model: TransformerModel): Promise<DcpResult> {
  const dir = mkdtempSync(join(tmpdir(), 'temper-bench-ckpt-'));
  try {
    const tensors = trainStateTensors(model);
    const views = [...tensors.values()].map((t) => ('data' in t ? t.data : t.read()));
    const bytes = views.reduce((a, t) => a + t.byteLength, 0);
    const store = await openObjectStore(pathToFileURL(join(dir, 'store')).href);
    const dcp = new DcpCheckpoints(store, { prefix: 'ckpts' });
    const rawPath = join(dir, 'raw.bin');
    const rounds = Number(argv.rounds ?? (argv.quick ? 7 : 15));
    const runs: { rawW: number; rawR: number; dcpW: number; dcpR: number }[] = [];
    for (let i = 0; i < rounds; i++) {
      const name = `step-${i}`;
      const raw = async () => ({
        w: (await timeAsync(() => plainCarefulWrite(rawPath, views))).seconds,
        r: (await timeAsync(() => readFile(rawPath))).seconds,
      });
      const ours = async () => ({
        w: (await timeAsync(() => dcp.save(name, { tensors, step: i }))).seconds,
        r: (await timeAsync(() => dcp.load(name))).seconds,
      });
      let a: { w: number; r: number };
      let b: { w: number; r: number };
      if (i % 2 === 0) {
        a = await raw();
        b = await ours();
      } else {
        b = await ours();
        a = await raw();
      }
      runs.push({ rawW: a.w, rawR: a.r, dcpW: b.w, dcpR: b.r });
      await rm(rawPath, { force: true });
      await dcp.delete(name);
    }
    const mbs = (s: number[]) => (mb(bytes) / median(s)).toFixed(0);
    const result: DcpResult = {
      save: median(runs.map((r) => r.rawW / r.dcpW)),
      load: median(runs.map((r) => r.rawR / r.dcpR)),
      bytes,
      rounds,
    };
    log(
      `\nDCP (weights + AdamW moments, ${mb(bytes).toFixed(1)} MB, file:// with fsync, median of ${rounds} interleaved rounds): ` +
        `save ${mbs(runs.map((r) => r.dcpW))} MB/s vs plain careful write ${mbs(runs.map((r) => r.rawW))} MB/s; ` +
        `load ${mbs(runs.map((r) => r.dcpR))} MB/s vs plain read ${mbs(runs.map((r) => r.rawR))} MB/s`,
    );
    log(
      `  per-round save ratios ${runs.map((r) => round(r.rawW / r.dcpW)).join(' ')}; load ratios ${runs.map((r) => round(r.rawR / r.dcpR)).join(' ')}`,
    );
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface DcpResult {
  save: number;
  load: number;
  bytes: number;
  rounds: number;
}

/** The ~25M model (seeded weights); `steps` AdamW steps give it optimizer state to save. */
function bigModel(steps: number): TransformerModel {
  const big = new TransformerModel(LLAMA_25M);
  big.loadTensors(initialWeights(big, 7, { normJitter: 0.1 }));
  for (const { sequences, weights } of batches(steps, 42)) {
    big.forwardBackwardCrossEntropy(sequences, weights);
    big.optimStep(ADAM);
  }
  return big;
}

async function dcpOrNull(model: TransformerModel): Promise<DcpResult | null> {
  try {
    return await benchDcp(model);
  } catch (err) {
    log(`DCP bench failed: ${(err as Error).message}`);
    return null;
  }
}

function dcpFields(dcp: DcpResult | null) {
  return {
    dcp_save_vs_raw: dcp ? round(dcp.save) : null,
    dcp_load_vs_raw: dcp ? round(dcp.load) : null,
    dcp_rounds: dcp?.rounds ?? null,
  };
}

async function main(): Promise<void> {
  if (![STEPS, BATCH, SEQ].every((v) => Number.isInteger(v) && v >= 1) || STEPS < 2)
    throw new Error('--steps must be an integer >= 2; --batch and --seq-len positive integers');
  if (argv['dcp-only']) {
    const dcp = await dcpOrNull(bigModel(1));
    log(JSON.stringify({ bench: 'checkpoints', ...dcpFields(dcp) }));
    return;
  }
  const results: ModelResult[] = [];
  const small = await TransformerModel.fromDirectory(BUNDLED);
  results.push(await benchModel('byte-lm-3m', small));
  const big = bigModel(0);
  log(`\n(~25M model: ${countParameters(LLAMA_25M)} parameters by config)`);
  results.push(await benchModel('llama-25m', big));
  const dcp = await dcpOrNull(big);
  const [a, b] = results as [ModelResult, ModelResult];
  const summary = {
    bench: 'checkpoints',
    delta_ratio_1step: Math.min(a.delta_ratio_1step, b.delta_ratio_1step),
    delta_ratio_10step: Math.min(a.delta_ratio_10step, b.delta_ratio_10step),
    zstd_ratio: Math.max(a.zstd_ratio, b.zstd_ratio),
    entropy_bound_1step: Math.min(a.entropy_bound_1step, b.entropy_bound_1step),
    encode_mb_s: b.encode_mb_s,
    decode_mb_s: b.decode_mb_s,
    ...dcpFields(dcp),
    reference_ratios: REFERENCE_RATIOS,
    export_dtype: 'bf16',
    models: results.map(({ losses: _l, ...rest }) => rest),
  };
  log(JSON.stringify(summary));
}

await main();

// bench:serving — a deployment (gateway + one onnxruntime replica process) through its HTTP
// API, next to the native engine's own sampler (TransformerModel.sample, the anchor) in the
// same run, plus hot-load time of a full snapshot vs an arc_v2 delta and serving numerics.
//
//   npm run bench:serving [-- --reps 3] [--prompt-len 128] [--decode 64] [--quick]
//
// For the bundled model (byte-lm-3m) and a ~25M-parameter random-weights model of the same
// family (written to a temp dir as an HF-layout base model):
// - prefill tok/s: prompt tokens / time of a max_tokens=1 request (HTTP wall clock; the
//   replica's server_timing.prefill_duration figure is printed beside it); engine: prompt
//   tokens / time of sample(prompt, {maxTokens: 1}). Every request has a fresh prompt, so the
//   replica's prefix cache never hits.
// - decode tok/s: (tokens of a max_tokens=D request − 1) / (its time − the max_tokens=1 time),
//   so prefill and per-request HTTP overhead cancel; the engine figure is computed the same
//   way from sample(). Both sides run one thread (replica `threads: 1`, engine `threads: 1`),
//   temperature 1, no EOS stop (ignore_eos), median over reps.
// - hot-load: signal → every replica serves the identity (status polled every 5 ms) for a
//   full fp32 snapshot and for an arc_v2 delta of a "training step" (a tenth of each tensor's
//   entries moved) against it; median over reps. Both are the replica's real loads from the
//   file:// bucket (files just written, so in the page cache): a full load reads every file,
//   a delta reads the delta files and decodes them against the held snapshot; with weights
//   as initializers (the default) each then builds its session. The replica's own phases
//   (fetch+decode, build, swap; from the ledger) are printed beside the totals.
// - logprob MAE: echoed prompt logprobs from the deployment vs TransformerModel.forward on the
//   same tokens, on the base weights and again after the delta hot-load (max reported).
//
// The headline numbers are the ~25M model's; logprob_mae is the max over both models.
// Last stdout line: {"bench":"serving","ort_decode_tok_s":..,"engine_decode_tok_s":..,
//   "ort_prefill_tok_s":..,"engine_prefill_tok_s":..,"hotload_full_ms":..,"hotload_delta_ms":..,
//   "logprob_mae":..,"noisy":..,"models":[..]}
// `noisy` is true when the spread of any timed median's reps exceeds 25% (the bench machine's
// cores are shared): read those figures as indicative.

import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { dirSnapshot, writeDeltaSnapshot } from '../src/checkpoints/deltas/snapshot.js';
import {
  readSafetensors,
  serializeSafetensors,
  type TensorMap,
} from '../src/checkpoints/safetensors.js';
import { DeploymentRegistry } from '../src/deployments/index.js';
import { countParameters, toHfConfig } from '../src/engine/config.js';
import { initialWeights } from '../src/engine/init.js';
import { TransformerModel } from '../src/engine/model.js';
import { HotLoadClient } from '../src/sdk/deployment-sampler.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { LLAMA_25M, median, perturbTensors, Reps } from './support/common.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BUNDLED = join(ROOT, 'catalog', 'accounts', 'temper', 'models', 'byte-lm-3m');

const { values: argv } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    'prompt-len': { type: 'string', default: '128' },
    decode: { type: 'string', default: '64' },
    quick: { type: 'boolean', default: false },
  },
});
const QUICK = argv.quick;
const REPS = QUICK ? 1 : Number(argv.reps);
const PROMPT = QUICK ? 32 : Number(argv['prompt-len']);
const DECODE = QUICK ? 16 : Number(argv.decode);
if (![REPS, PROMPT, DECODE].every((v) => Number.isInteger(v) && v >= 1) || DECODE < 2)
  throw new Error('--reps and --prompt-len must be positive integers, --decode >= 2');

const log = (line: string) => process.stdout.write(`${line}\n`);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const reps = new Reps(log);

async function writeFull(
  dir: string,
  config: Record<string, unknown>,
  tensors: TensorMap,
  file = 'model-00000.safetensors',
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await copyFile(join(BUNDLED, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  await writeFile(join(dir, file), serializeSafetensors(tensors));
}

interface ModelResult {
  model: string;
  parameters: number;
  ort_prefill_tok_s: number;
  engine_prefill_tok_s: number;
  ort_prefill_server_tok_s: number;
  ort_decode_tok_s: number;
  engine_decode_tok_s: number;
  ort_decode_server_tok_s: number;
  hotload_full_ms: number;
  hotload_delta_ms: number;
  hotload_phases_ms: { full: Phase; delta: Phase };
  full_mb: number;
  delta_mb: number;
  logprob_mae: number;
}

interface CompletionBody {
  choices: { token_ids: number[]; logprobs?: { token_logprobs: (number | null)[] } | null }[];
  usage: { prompt_tokens: number; completion_tokens: number };
  server_timing: { prefill_duration: number; decode_duration: number };
  snapshot_identity: string | null;
}

async function benchModel(
  name: string,
  baseDir: string,
  config: Record<string, unknown>,
  base: TensorMap,
): Promise<ModelResult> {
  const tmp = await mkdtemp(join(tmpdir(), 'temper-bench-serving-'));
  const bucket = join(tmp, 'bucket');
  await mkdir(bucket);
  const registry = new DeploymentRegistry(undefined, { openGateways: true });
  const engine = await TransformerModel.fromDirectory(baseDir, { threads: 1 });
  const parameters = countParameters(engine.config);
  log(`\n== ${name} (${parameters} parameters)`);
  try {
    const baseModel = `accounts/temper/models/${name}`;
    const t0 = performance.now();
    const d = await registry.create({
      account: 'bench',
      deploymentId: `serving-${name}`,
      baseModel,
      baseModelDir: baseDir,
      hotLoad: { bucketUrl: pathToFileURL(bucket).href },
      replica: { threads: 1 },
    });
    const url = d.gatewayUrl as string;
    log(`deployment ready in ${round(performance.now() - t0, 0)} ms`);
    const headers = {
      'content-type': 'application/json',
      'fireworks-model': baseModel,
      'fireworks-deployment': d.name,
    };
    const complete = async (body: Record<string, unknown>) => {
      const t = performance.now();
      const res = await fetch(`${url}/inference/v1/completions`, {
        method: 'POST',
        headers,
        body: JSON.stringify(body),
      });
      const json = (await res.json()) as CompletionBody;
      const ms = performance.now() - t;
      if (!res.ok) throw new Error(`completion failed: ${res.status} ${JSON.stringify(json)}`);
      return { json, ms };
    };

    // fresh prompts (a distinct head per request: no prefix-cache hits)
    const rnd = seededRandom(11);
    let promptNo = 0;
    const freshPrompt = () => {
      promptNo++;
      return [
        promptNo % 256,
        (promptNo >> 8) % 256,
        ...Array.from({ length: PROMPT - 2 }, () => 32 + Math.floor(rnd() * 95)),
      ];
    };
    // warm-up: one request each way
    await complete({ prompt: freshPrompt(), max_tokens: 4, ignore_eos: true, seed: 0 });
    engine.sample(freshPrompt(), { maxTokens: 4, seed: 0 });

    const ortPrefill: number[] = [];
    const ortPrefillServer: number[] = [];
    const ortDecode: number[] = [];
    const ortDecodeServer: number[] = [];
    const engPrefill: number[] = [];
    const engDecode: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const one = await complete({
        prompt: freshPrompt(),
        max_tokens: 1,
        ignore_eos: true,
        seed: r,
      });
      const many = await complete({
        prompt: freshPrompt(),
        max_tokens: DECODE,
        ignore_eos: true,
        seed: r,
      });
      const n = many.json.usage.completion_tokens;
      ortPrefill.push(PROMPT / (one.ms / 1000));
      ortPrefillServer.push(PROMPT / one.json.server_timing.prefill_duration);
      ortDecode.push((n - 1) / ((many.ms - one.ms) / 1000));
      ortDecodeServer.push(n / many.json.server_timing.decode_duration);

      let t = performance.now();
      engine.sample(freshPrompt(), { maxTokens: 1, seed: r });
      const e1 = performance.now() - t;
      t = performance.now();
      const out = engine.sample(freshPrompt(), { maxTokens: DECODE, seed: r });
      const eN = performance.now() - t;
      const en = out.samples[0]?.tokens.length ?? DECODE;
      engPrefill.push(PROMPT / (e1 / 1000));
      engDecode.push((en - 1) / ((eN - e1) / 1000));
    }
    const ort_prefill_tok_s = reps.settle(`${name} ort prefill`, ortPrefill);
    const engine_prefill_tok_s = reps.settle(`${name} engine prefill`, engPrefill);
    const ort_decode_tok_s = reps.settle(`${name} ort decode`, ortDecode);
    const engine_decode_tok_s = reps.settle(`${name} engine decode`, engDecode);
    const ort_prefill_server_tok_s = median(ortPrefillServer);
    const ort_decode_server_tok_s = median(ortDecodeServer);
    log(
      `prefill (${PROMPT} tokens): ort ${round(ort_prefill_tok_s)} tok/s over HTTP (server timing ${round(ort_prefill_server_tok_s)}), engine ${round(engine_prefill_tok_s)} tok/s`,
    );
    log(
      `decode (${DECODE} tokens): ort ${round(ort_decode_tok_s)} tok/s over HTTP (server timing ${round(ort_decode_server_tok_s)}), engine ${round(engine_decode_tok_s)} tok/s`,
    );

    // logprobs on the base weights: deployment (echo) vs engine forward
    const lpMae = async (tensors: TensorMap | null, expectIdentity: string | null) => {
      const tokens = freshPrompt();
      const { json } = await complete({
        prompt: tokens,
        max_tokens: 1,
        echo: true,
        logprobs: 0,
        temperature: 0,
      });
      if (json.snapshot_identity !== expectIdentity)
        throw new Error(`expected ${expectIdentity}, served ${json.snapshot_identity}`);
      const lps = json.choices[0]?.logprobs?.token_logprobs ?? [];
      if (tensors) engine.loadTensors(tensors);
      const ref = engine.forward([{ tokens: tokens.slice(0, -1), targets: tokens.slice(1) }]);
      let s = 0;
      for (let i = 0; i < ref.length; i++)
        s += Math.abs((lps[i + 1] as number) - (ref[i] as number));
      return s / ref.length;
    };
    const maeBase = await lpMae(null, null);

    // hot-load: full snapshot, then an arc_v2 delta against it
    const hl = new HotLoadClient({ inferenceUrl: url, deployment: d.name, model: baseModel });
    const timeLoad = async (identity: string, previous?: string) => {
      const t = performance.now();
      await hl.hotload(identity, previous ? { previousSnapshotIdentity: previous } : {});
      await hl.waitForIdentity(identity, 120_000, 5);
      return performance.now() - t;
    };
    const fullMs: number[] = [];
    const deltaMs: number[] = [];
    const phases = { full: [] as Phase[], delta: [] as Phase[] };
    let last: TensorMap = base;
    let fullBytes = 0;
    let deltaBytes = 0;
    for (let r = 0; r < REPS; r++) {
      const full = perturbTensors(base, 100 + r);
      const step = perturbTensors(full, 200 + r);
      const fullId = `full-${r}`;
      const deltaId = `delta-${r}`;
      await writeFull(join(bucket, fullId), config, full);
      const staging = join(tmp, `staging-${r}`);
      await writeFull(staging, config, step);
      await writeDeltaSnapshot({
        previous: dirSnapshot(join(bucket, fullId)),
        next: dirSnapshot(staging),
        previousSnapshotIdentity: fullId,
        target: { dir: join(bucket, deltaId) },
      });
      fullBytes = await dirBytes(join(bucket, fullId));
      deltaBytes = await dirBytes(join(bucket, deltaId));
      fullMs.push(await timeLoad(fullId));
      deltaMs.push(await timeLoad(deltaId, fullId));
      phases.full.push(await loadPhases(url, d.name, headers, fullId));
      phases.delta.push(await loadPhases(url, d.name, headers, deltaId));
      last = step;
      await rm(staging, { recursive: true, force: true });
    }
    const hotload_full_ms = reps.settle(`${name} hot-load full`, fullMs);
    const hotload_delta_ms = reps.settle(`${name} hot-load delta`, deltaMs);
    log(
      `hot-load: full ${round(hotload_full_ms)} ms (${round(fullBytes / 1e6, 2)} MB), arc_v2 delta ${round(hotload_delta_ms)} ms (${round(deltaBytes / 1e6, 2)} MB); delta/full ${round(hotload_delta_ms / hotload_full_ms, 3)}`,
    );
    const hotload_phases_ms = { full: medianPhase(phases.full), delta: medianPhase(phases.delta) };
    log(
      `  replica phases (median ms): full ${JSON.stringify(hotload_phases_ms.full)}, delta ${JSON.stringify(hotload_phases_ms.delta)}`,
    );
    const maeDelta = await lpMae(last, `delta-${REPS - 1}`);
    log(
      `logprob MAE deployment vs engine: base ${maeBase.toExponential(2)}, after delta ${maeDelta.toExponential(2)}`,
    );
    return {
      model: name,
      parameters,
      ort_prefill_tok_s: round(ort_prefill_tok_s),
      engine_prefill_tok_s: round(engine_prefill_tok_s),
      ort_prefill_server_tok_s: round(ort_prefill_server_tok_s),
      ort_decode_tok_s: round(ort_decode_tok_s),
      engine_decode_tok_s: round(engine_decode_tok_s),
      ort_decode_server_tok_s: round(ort_decode_server_tok_s),
      hotload_full_ms: round(hotload_full_ms),
      hotload_delta_ms: round(hotload_delta_ms),
      hotload_phases_ms,
      full_mb: round(fullBytes / 1e6, 2),
      delta_mb: round(deltaBytes / 1e6, 2),
      logprob_mae: Math.max(maeBase, maeDelta),
    };
  } finally {
    await registry.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

/** A replica's phases of one load (ms), from the deployment's ledger. */
type Phase = { fetch: number; build: number; swap: number };

async function loadPhases(
  url: string,
  deployment: string,
  headers: Record<string, string>,
  identity: string,
): Promise<Phase> {
  const res = await fetch(`${url}/v1/${deployment}/ledger`, { headers });
  const ledger = (await res.json()) as {
    snapshots: { identity: string; replicas: { timing_ms: Phase | null }[] }[];
  };
  const timing = ledger.snapshots.find((s) => s.identity === identity)?.replicas[0]?.timing_ms;
  if (!timing) throw new Error(`the ledger has no timing for ${identity}`);
  return timing;
}

function medianPhase(xs: Phase[]): Phase {
  const pick = (k: keyof Phase) => round(median(xs.map((x) => x[k])));
  return { fetch: pick('fetch'), build: pick('build'), swap: pick('swap') };
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) n += (await stat(join(dir, f))).size;
  return n;
}

async function main(): Promise<void> {
  log(
    `bench:serving — ${availableParallelism()} cores, load ${loadavg()
      .map((x) => round(x, 2))
      .join(' ')}; prompt ${PROMPT}, decode ${DECODE}, reps ${REPS}${QUICK ? ' (quick)' : ''}`,
  );
  const results: ModelResult[] = [];
  const smallCfg = JSON.parse(await readFile(join(BUNDLED, 'config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const smallW = (await readSafetensors(join(BUNDLED, 'model.safetensors'))).tensors;
  results.push(await benchModel('byte-lm-3m', BUNDLED, smallCfg, smallW));

  const cfg = LLAMA_25M;
  const bigDir = await mkdtemp(join(tmpdir(), 'temper-bench-llama-25m-'));
  try {
    const init = new TransformerModel(cfg, { threads: 1 });
    const w = initialWeights(init, 7, { normJitter: 0.1 });
    const hf = toHfConfig(cfg);
    await writeFull(bigDir, hf, w, 'model.safetensors');
    results.push(await benchModel('llama-25m', bigDir, hf, w));
  } finally {
    await rm(bigDir, { recursive: true, force: true });
  }
  const [, big] = results as [ModelResult, ModelResult];
  const load = loadavg()[0] ?? 0;
  if (load > availableParallelism()) reps.noisy = true;
  log(
    JSON.stringify({
      bench: 'serving',
      ort_decode_tok_s: big.ort_decode_tok_s,
      engine_decode_tok_s: big.engine_decode_tok_s,
      ort_prefill_tok_s: big.ort_prefill_tok_s,
      engine_prefill_tok_s: big.engine_prefill_tok_s,
      hotload_full_ms: big.hotload_full_ms,
      hotload_delta_ms: big.hotload_delta_ms,
      logprob_mae: Math.max(...results.map((r) => r.logprob_mae)),
      noisy: reps.noisy,
      headline_model: big.model,
      load_avg_1m: round(load, 2),
      models: results,
    }),
  );
}

await main();

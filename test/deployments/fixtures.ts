// Snapshots in a file:// bucket for deployment tests: the bundled model's weights, perturbed
// as a training step would, written as full HF-layout snapshots or arc_v2 deltas.
import { copyFile, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundledModelDir } from '../../src/catalog/bundled.js';
import { dirSnapshot, writeDeltaSnapshot } from '../../src/checkpoints/deltas/snapshot.js';
import {
  readSafetensors,
  serializeSafetensors,
  type TensorMap,
} from '../../src/checkpoints/safetensors.js';
import { TransformerModel } from '../../src/engine/index.js';

export const baseDir = bundledModelDir();

export async function baseTensors(): Promise<TensorMap> {
  return (await readSafetensors(join(baseDir, 'model.safetensors'))).tensors;
}

export async function baseConfig(): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(baseDir, 'config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
}

/** A copy of `t` with a small deterministic update on every weight (a "training step"). */
export function perturb(t: TensorMap, seed: number, scale = 0.01): TensorMap {
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
  const out: TensorMap = new Map();
  for (const [k, v] of t) {
    const d = Float32Array.from(v.data);
    // touch a tenth of the entries, as sparse-ish updates do
    for (let i = 0; i < d.length; i += 10) d[i] = (d[i] as number) + scale * rnd();
    out.set(k, { shape: v.shape, data: d });
  }
  return out;
}

export async function makeBucket(): Promise<{ dir: string; url: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'temper-deploy-'));
  return { dir, url: `file://${dir}` };
}

export async function writeFull(
  bucketDir: string,
  identity: string,
  tensors: TensorMap,
  config?: Record<string, unknown>,
): Promise<string> {
  const dir = join(bucketDir, identity);
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify(config ?? (await baseConfig()), null, 2),
  );
  await copyFile(join(baseDir, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  await writeFile(join(dir, 'model-00000.safetensors'), serializeSafetensors(tensors));
  return dir;
}

/** Writes `identity` as an arc_v2 delta of `tensors` against `previous` (whose full weights are `prevTensors`). */
export async function writeDelta(
  bucketDir: string,
  identity: string,
  previous: string,
  tensors: TensorMap,
  prevTensors: TensorMap,
): Promise<void> {
  const staging = await mkdtemp(join(tmpdir(), 'temper-full-'));
  await writeFull(staging, 'full', tensors);
  await writeFull(staging, 'prev', prevTensors);
  await writeDeltaSnapshot({
    previous: dirSnapshot(join(staging, 'prev')),
    next: dirSnapshot(join(staging, 'full')),
    previousSnapshotIdentity: previous,
    target: { dir: join(bucketDir, identity) },
  });
}

/** Engine reference: logprob of tokens[i] given tokens[..i] for i >= 1. */
export async function engineLogprobs(
  tensors: TensorMap | null,
  tokens: number[],
): Promise<Float32Array> {
  const model = await TransformerModel.fromDirectory(baseDir, { threads: 1 });
  if (tensors) model.loadTensors(tensors);
  return model.forward([{ tokens: tokens.slice(0, -1), targets: tokens.slice(1) }]);
}

export function mae(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs((a[i] as number) - (b[i] as number));
  return s / a.length;
}

export const headers = (deployment: string, model = 'accounts/temper/models/byte-lm-3m') => ({
  'content-type': 'application/json',
  'fireworks-model': model,
  'fireworks-deployment': deployment,
});

/** Waits until every replica serves `identity`; `headers` carry a guarded gateway's credential. */
export async function waitLoaded(
  url: string,
  identity: string,
  timeoutMs = 20_000,
  headers: Record<string, string> = {},
): Promise<unknown> {
  const t0 = Date.now();
  for (;;) {
    const s = (await (await fetch(`${url}/hot_load/v1/models/hot_load`, { headers })).json()) as {
      replicas: {
        readiness: boolean;
        current_snapshot_identity: string | null;
        loading_state: { stage: string };
      }[];
    };
    if (
      s.replicas.length > 0 &&
      s.replicas.every((r) => r.readiness && r.current_snapshot_identity === identity)
    )
      return s;
    if (s.replicas.some((r) => r.loading_state.stage === 'error'))
      throw new Error(`load of ${identity} failed: ${JSON.stringify(s)}`);
    if (Date.now() - t0 > timeoutMs)
      throw new Error(`timeout waiting for ${identity}: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits until no replica is loading (ready or failed). */
export async function waitSettled(url: string, timeoutMs = 20_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const s = (await (await fetch(`${url}/hot_load/v1/models/hot_load`)).json()) as {
      replicas: { loading_state: { stage: string } }[];
    };
    if (
      s.replicas.every(
        (r) => r.loading_state.stage === 'ready' || r.loading_state.stage === 'error',
      )
    )
      return;
    if (Date.now() - t0 > timeoutMs) throw new Error('timeout waiting for loads to settle');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function sse(res: Response): Promise<unknown[]> {
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((b) => b.startsWith('data: '))
    .map((b) => b.slice(6))
    .map((d) => (d === '[DONE]' ? '[DONE]' : JSON.parse(d)));
}

/**
 * A PEFT LoRA adapter of the bundled model (rank 4, alpha 8, on q_proj and v_proj of every
 * layer, seeded values large enough to move its logprobs) written to `dir`
 * (adapter_config.json, adapter_model.safetensors); returns the base weights with it merged
 * in (W + alpha/r * B A), the engine reference of what it serves.
 */
export async function writePeftAdapter(dir: string, seed: number): Promise<TensorMap> {
  const [rank, alpha, targets] = [4, 8, ['q_proj', 'v_proj']];
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 4294967296 - 0.5) * 0.6;
  };
  const base = await baseTensors();
  const adapter: TensorMap = new Map();
  const merged: TensorMap = new Map(base);
  for (const [name, w] of base) {
    if (!targets.some((t) => name.endsWith(`.${t}.weight`))) continue;
    const [o, i] = w.shape as [number, number];
    const a = Float32Array.from({ length: rank * i }, rnd);
    const b = Float32Array.from({ length: o * rank }, rnd);
    const stem = `base_model.model.${name.replace(/\.weight$/, '')}`;
    adapter.set(`${stem}.lora_A.weight`, { shape: [rank, i], data: a });
    adapter.set(`${stem}.lora_B.weight`, { shape: [o, rank], data: b });
    const m = Float32Array.from(w.data);
    for (let r = 0; r < o; r++)
      for (let c = 0; c < i; c++) {
        let d = 0;
        for (let k = 0; k < rank; k++) d += (b[r * rank + k] as number) * (a[k * i + c] as number);
        m[r * i + c] = (m[r * i + c] as number) + (alpha / rank) * d;
      }
    merged.set(name, { shape: w.shape, data: m });
  }
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'adapter_config.json'),
    JSON.stringify({ peft_type: 'LORA', r: rank, lora_alpha: alpha, target_modules: targets }),
  );
  await writeFile(join(dir, 'adapter_model.safetensors'), serializeSafetensors(adapter));
  return merged;
}

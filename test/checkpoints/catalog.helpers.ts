// Fixtures for the catalog and promotion tests: checkpoints written into a file:// object
// store the way their writers lay them out. DCP checkpoints come from the real DCP module;
// sampler exports are written here in the exporter's layout (files + `temper_export.json`
// with sizes and sha256, committed last; see src/checkpoints/exports/files.ts).
import { createHash } from 'node:crypto';
import { DcpCheckpoints } from '../../src/checkpoints/dcp/index.js';
import { storeSnapshot, writeDeltaSnapshot } from '../../src/checkpoints/deltas/index.js';
import type { ObjectStore } from '../../src/checkpoints/object-store/types.js';
import { serializeSafetensors, type TensorMap } from '../../src/checkpoints/safetensors.js';

export const ACCOUNT = 'acme';
export const JOB = 'job-1';
export const ROOT = `accounts/${ACCOUNT}/rlorTrainerJobs/${JOB}/checkpoints`;
export const nameOf = (id: string, job = JOB) =>
  `accounts/${ACCOUNT}/rlorTrainerJobs/${job}/checkpoints/${id}`;

export function tinyWeights(
  shift = 0,
  names = ['model.embed_tokens.weight', 'model.norm.weight'],
): TensorMap {
  const m: TensorMap = new Map();
  names.forEach((name, k) => {
    const data = new Float32Array(24);
    for (let i = 0; i < data.length; i++) data[i] = Math.sin(i + 7 * k) * 0.05 + shift * 1e-3;
    m.set(name, { shape: [4, 6], data });
  });
  return m;
}

export interface ExportOptions {
  kind?: string;
  createTime: Date;
  expireTime?: Date | null;
  baseModel?: string | null;
  /** Leave the manifest out (a half-written export). */
  uncommitted?: boolean;
}

/** Writes files under `{ROOT}/{id}/` and then their manifest. */
export async function putExport(
  store: ObjectStore,
  id: string,
  files: Record<string, Buffer | string>,
  opts: ExportOptions,
  root = ROOT,
): Promise<void> {
  const listed: { path: string; size: number; sha256: string }[] = [];
  for (const [path, body] of Object.entries(files)) {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    await store.put(`${root}/${id}/${path}`, buf);
    listed.push({ path, size: buf.length, sha256: createHash('sha256').update(buf).digest('hex') });
  }
  if (opts.uncommitted) return;
  const manifest = {
    format: 'temper-export',
    version: 1,
    kind: opts.kind ?? 'hf_base',
    createTime: opts.createTime.toISOString(),
    expireTime: opts.expireTime ? opts.expireTime.toISOString() : null,
    baseModel: opts.baseModel ?? null,
    files: listed,
  };
  await store.put(`${root}/${id}/temper_export.json`, JSON.stringify(manifest), { ifAbsent: true });
}

export function hfFiles(shift = 0): Record<string, Buffer | string> {
  return {
    'config.json': JSON.stringify({ model_type: 'qwen3', hidden_size: 6 }),
    'model.safetensors': serializeSafetensors(tinyWeights(shift), {
      dtype: 'BF16',
      metadata: { format: 'pt' },
    }),
  };
}

export function peftFiles(): Record<string, Buffer | string> {
  return {
    'adapter_config.json': JSON.stringify({
      peft_type: 'LORA',
      r: 4,
      lora_alpha: 8,
      target_modules: ['q_proj', 'v_proj'],
      base_model_name_or_path: null,
    }),
    'adapter_model.safetensors': serializeSafetensors(
      tinyWeights(0, [
        'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
        'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
      ]),
      { metadata: { format: 'pt' } },
    ),
  };
}

export async function putHfExport(
  store: ObjectStore,
  id: string,
  opts: ExportOptions & { shift?: number },
): Promise<void> {
  await putExport(store, id, hfFiles(opts.shift ?? 0), opts);
}

export async function putPeftExport(
  store: ObjectStore,
  id: string,
  opts: ExportOptions,
): Promise<void> {
  await putExport(store, id, peftFiles(), { kind: 'peft_lora', ...opts });
}

/** A DCP train state through the real DCP writer; `lora` adds adapter tensors. */
export async function putDcp(
  store: ObjectStore,
  id: string,
  opts: { now: Date; lora?: boolean; ttlSeconds?: number; claim?: string },
): Promise<void> {
  const dcp = new DcpCheckpoints(store, { prefix: ROOT, now: () => opts.now });
  const names = opts.lora
    ? [
        'weights/model.layers.0.self_attn.q_proj.lora_A.weight',
        'weights/model.layers.0.self_attn.q_proj.lora_B.weight',
      ]
    : ['weights/model.embed_tokens.weight', 'weights/model.norm.weight'];
  await dcp.save(id, {
    tensors: tinyWeights(0, names),
    step: 3,
    ttlSeconds: opts.ttlSeconds,
    checkpointType: opts.claim,
  });
}

/** An arc_v2 delta of the HF export `nextId`'s files against the export `prevId`. */
export async function putDelta(
  store: ObjectStore,
  id: string,
  prevId: string,
  opts: { now: Date; ttlSeconds?: number },
): Promise<void> {
  const stage = `staging/${id}`;
  for (const [path, body] of Object.entries(hfFiles(5))) await store.put(`${stage}/${path}`, body);
  await writeDeltaSnapshot({
    previous: storeSnapshot(store, `${ROOT}/${prevId}`),
    next: storeSnapshot(store, stage),
    previousSnapshotIdentity: prevId,
    target: { store, prefix: `${ROOT}/${id}` },
    ttlSeconds: opts.ttlSeconds,
    now: () => opts.now,
  });
}

/** Every key in the store (for "nothing changed" checks). */
export async function allKeys(store: ObjectStore): Promise<string[]> {
  return (await store.list('')).map((o) => o.key);
}

export const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute));

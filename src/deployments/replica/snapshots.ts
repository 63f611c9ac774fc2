// Snapshots as a replica holds them: the raw files of the snapshot it serves (so that the
// next arc_v2 delta can be applied against them), read from the deployment's bucket.
import { Readable } from 'node:stream';
import {
  applyDeltaSnapshot,
  DELTA_MANIFEST,
  readDeltaManifest,
  type SnapshotReader,
} from '../../checkpoints/deltas/snapshot.js';
import { mergeLinear } from '../../checkpoints/exports/merged.js';
import { ADAPTER_CONFIG, readPeftAdapter } from '../../checkpoints/exports/peft.js';
import {
  type ObjectInfo,
  type ObjectStore,
  ObjectStoreError,
} from '../../checkpoints/object-store/index.js';
import { parseSafetensors } from '../../checkpoints/safetensors.js';
import type { WeightTensor } from '../onnx/export.js';

export type HotLoadErrorCode =
  | 'invalid_argument'
  | 'unknown_previous_snapshot'
  | 'config_validation'
  | 'corrupt'
  | 'not_found'
  | 'too_early';

export class HotLoadError extends Error {
  constructor(
    readonly code: HotLoadErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HotLoadError';
  }
}

/** A snapshot held in memory: file name -> bytes. */
export interface HeldSnapshot {
  identity: string;
  files: Map<string, Buffer>;
}

const WEIGHTS = /\.safetensors$/;
const SKIP = /^(adapter_|\.)/;

/** Identities are one path segment. */
export function checkIdentity(identity: string): string {
  if (identity.length === 0 || identity.length > 255)
    throw new HotLoadError('invalid_argument', 'identity must be 1-255 characters');
  if (identity.includes('/'))
    throw new HotLoadError(
      'invalid_argument',
      `identity '${identity}' must be a single path segment (no '/')`,
    );
  if (identity === '.' || identity === '..' || identity.includes('\\'))
    throw new HotLoadError(
      'invalid_argument',
      `identity '${identity}' is not a valid directory name`,
    );
  return identity;
}

export function heldReader(held: HeldSnapshot): SnapshotReader {
  return {
    where: `memory:${held.identity}`,
    async list() {
      return [...held.files.keys()].sort();
    },
    async read(path) {
      const b = held.files.get(path);
      if (!b) throw new HotLoadError('not_found', `snapshot ${held.identity} has no ${path}`);
      return b;
    },
  };
}

/** An in-memory ObjectStore (the target that a delta is reconstructed into). */
export class MemoryObjectStore implements ObjectStore {
  readonly url = 'memory://';
  readonly objects = new Map<string, Buffer>();
  async put(key: string, body: Buffer | Uint8Array | string | Readable): Promise<ObjectInfo> {
    let buf: Buffer;
    if (typeof body === 'string') buf = Buffer.from(body);
    else if (body instanceof Readable) {
      const parts: Buffer[] = [];
      for await (const c of body) parts.push(Buffer.from(c as Uint8Array));
      buf = Buffer.concat(parts);
    } else buf = Buffer.from(body);
    this.objects.set(key, buf);
    return { key, size: buf.length, updated: new Date(), etag: String(buf.length) };
  }
  async getStream(key: string): Promise<Readable> {
    return Readable.from([await this.get(key)]);
  }
  async get(key: string): Promise<Buffer> {
    const b = this.objects.get(key);
    if (!b) throw new ObjectStoreError('not_found', `${key} not found`);
    return b;
  }
  async stat(key: string): Promise<ObjectInfo | null> {
    const b = this.objects.get(key);
    return b ? { key, size: b.length, updated: new Date(), etag: String(b.length) } : null;
  }
  async list(prefix: string): Promise<ObjectInfo[]> {
    return [...this.objects.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, b]) => ({ key, size: b.length, updated: new Date(), etag: String(b.length) }));
  }
  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }
}

export interface IncrementalMetadata {
  previous_snapshot_identity: string;
  compression_format: 'arc_v2';
  checksum_format: 'alder32';
}

/**
 * Reads a full snapshot, or reconstructs a delta against `held` (which must be the snapshot
 * named by previous_snapshot_identity). `prefetched` holds files already fetched by hints.
 */
export async function readSnapshot(
  reader: SnapshotReader,
  identity: string,
  incremental: IncrementalMetadata | undefined,
  held: HeldSnapshot | null,
  prefetched: Map<string, Buffer> = new Map(),
): Promise<HeldSnapshot> {
  const cached: SnapshotReader = {
    where: reader.where,
    list: () => reader.list(),
    read: async (p) => prefetched.get(p) ?? reader.read(p),
  };
  if (incremental) {
    const prev = incremental.previous_snapshot_identity;
    if (!held || held.identity !== prev)
      throw new HotLoadError(
        'unknown_previous_snapshot',
        `incremental snapshot '${identity}' is a delta against '${prev}', which this replica does not hold (it holds ${held ? `'${held.identity}'` : 'no snapshot'}); signal a full snapshot`,
      );
    const manifest = await readDeltaManifest(cached);
    if (!manifest)
      throw new HotLoadError(
        'not_found',
        `${reader.where} has no ${DELTA_MANIFEST}: not an arc_v2 incremental snapshot`,
      );
    if (manifest.previous_snapshot_identity !== prev)
      throw new HotLoadError(
        'invalid_argument',
        `${reader.where}/${DELTA_MANIFEST} says the delta is against '${manifest.previous_snapshot_identity}', the signal says '${prev}'`,
      );
    const out = new MemoryObjectStore();
    try {
      await applyDeltaSnapshot({
        base: heldReader(held),
        delta: cached,
        target: { store: out, prefix: 'x' },
      });
    } catch (err) {
      throw new HotLoadError('corrupt', (err as Error).message);
    }
    const files = new Map<string, Buffer>();
    for (const [k, v] of out.objects) files.set(k.slice('x/'.length), v);
    // non-weight files the delta did not carry stay as they were
    for (const [k, v] of held.files) if (!files.has(k)) files.set(k, v);
    return { identity, files };
  }
  const names = await cached.list();
  if (!names.includes('config.json') && !names.includes(ADAPTER_CONFIG))
    throw new HotLoadError(
      'not_found',
      `${reader.where} has no config.json (nor ${ADAPTER_CONFIG}): is '${identity}' uploaded?`,
    );
  const files = new Map<string, Buffer>();
  for (const n of names) if (n !== DELTA_MANIFEST) files.set(n, await cached.read(n));
  return { identity, files };
}

/** The model weights of a held snapshot, by HF tensor name. */
export function snapshotTensors(held: HeldSnapshot): Map<string, WeightTensor> {
  const out = new Map<string, WeightTensor>();
  for (const [name, buf] of held.files) {
    if (!WEIGHTS.test(name) || SKIP.test(name)) continue;
    for (const [k, t] of parseSafetensors(buf, `${held.identity}/${name}`).tensors) out.set(k, t);
  }
  if (out.size === 0)
    throw new HotLoadError('not_found', `snapshot ${held.identity} has no .safetensors weights`);
  return out;
}

/** Keys that never take part in config validation (dtype of the files, writer versions). */
export const DEFAULT_IGNORED_CONFIG_KEYS = ['torch_dtype', 'transformers_version', '_name_or_path'];

/**
 * Validates a snapshot's config.json against the base model's: the documented messages
 * `Types mismatch`, `Extra base model config options`, `Extra snapshot model config options`,
 * `Config value mismatch for <field>`. Returns null when they agree.
 */
export function validateSnapshotConfig(
  base: Record<string, unknown>,
  snapshot: Record<string, unknown>,
  extraFieldsIgnore: readonly string[] = [],
): string | null {
  const ignore = new Set([...DEFAULT_IGNORED_CONFIG_KEYS, ...extraFieldsIgnore]);
  const typeOf = (c: Record<string, unknown>) =>
    JSON.stringify([c.model_type ?? null, c.architectures ?? null]);
  if (typeOf(base) !== typeOf(snapshot))
    return `Types mismatch: the base model is ${typeOf(base)}, the snapshot ${typeOf(snapshot)}`;
  const baseOnly = Object.keys(base).filter((k) => !(k in snapshot) && !ignore.has(k));
  if (baseOnly.length) return `Extra base model config options: ${baseOnly.sort().join(', ')}`;
  const snapOnly = Object.keys(snapshot).filter((k) => !(k in base) && !ignore.has(k));
  if (snapOnly.length) return `Extra snapshot model config options: ${snapOnly.sort().join(', ')}`;
  for (const k of Object.keys(base).sort()) {
    if (ignore.has(k)) continue;
    if (JSON.stringify(base[k]) !== JSON.stringify(snapshot[k]))
      return `Config value mismatch for ${k}: base ${JSON.stringify(base[k])}, snapshot ${JSON.stringify(snapshot[k])}`;
  }
  return null;
}

export function parseJsonObject(buf: Buffer, where: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(buf.toString('utf8'));
  } catch {
    throw new HotLoadError('invalid_argument', `${where} is not valid JSON`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new HotLoadError('invalid_argument', `${where} must be a JSON object`);
  return raw as Record<string, unknown>;
}

/** Whether a snapshot is a PEFT LoRA adapter (always a full adapter, merged onto the base). */
export function isAdapterSnapshot(held: HeldSnapshot): boolean {
  return held.files.has(ADAPTER_CONFIG) && !held.files.has('config.json');
}

/** The base weights with the snapshot's LoRA adapter merged in: W + (alpha/r)·B·A per target. */
export async function mergedAdapterTensors(
  held: HeldSnapshot,
  base: ReadonlyMap<string, WeightTensor>,
): Promise<Map<string, WeightTensor>> {
  const where = `snapshot ${held.identity}`;
  const file = (p: string): Buffer => {
    const b = held.files.get(p);
    if (!b) throw new HotLoadError('not_found', `${where} has no ${p}`);
    return b;
  };
  let adapter: Awaited<ReturnType<typeof readPeftAdapter>>;
  try {
    adapter = await readPeftAdapter({
      where,
      read: async (p) => file(p),
      stream: async (p) => Readable.from([file(p)]),
      size: async (p) => held.files.get(p)?.length ?? null,
    });
  } catch (err) {
    if (err instanceof HotLoadError) throw err;
    throw new HotLoadError('corrupt', (err as Error).message);
  }
  const out = new Map(base);
  const scale = adapter.alpha / adapter.rank;
  for (const [name, a] of adapter.tensors) {
    if (!name.endsWith('.lora_A.weight')) continue;
    const target = name.replace(/\.lora_A\.weight$/, '.weight');
    const b = adapter.tensors.get(name.replace(/\.lora_A\.weight$/, '.lora_B.weight'));
    const w = base.get(target);
    if (!b || !w)
      throw new HotLoadError(
        'corrupt',
        `${where}: adapter tensor ${name} has no ${b ? 'base weight' : 'lora_B'} to merge with`,
      );
    const [o, i] = w.shape as [number, number];
    out.set(target, {
      shape: w.shape,
      data: mergeLinear(w.data, a.data, b.data, scale, o, i, adapter.rank),
    });
  }
  return out;
}

// Snapshots as a replica holds them: the raw files of the snapshot it serves (so that the
// next arc_v2 delta can be applied against them), read from the deployment's bucket. The
// model weights are views into those files (no copy); a delta is decoded straight into a
// second set of buffers, checked tensor by tensor, and only then becomes the held snapshot.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { applyDeltaFileAsync } from '../../checkpoints/deltas/arc-v2.js';
import { parseRawSafetensors, tensorBytes } from '../../checkpoints/deltas/raw-safetensors.js';
import {
  DELTA_MANIFEST,
  type DeltaManifest,
  readDeltaManifest,
  type SnapshotReader,
} from '../../checkpoints/deltas/snapshot.js';
import { mergeLinear } from '../../checkpoints/exports/merged.js';
import { ADAPTER_CONFIG, readPeftAdapter } from '../../checkpoints/exports/peft.js';
import type { DecoderWeight, RawWeight, WeightDtype } from '../onnx/export.js';
import { float32Of } from '../onnx/session.js';

export type HotLoadErrorCode =
  | 'invalid_argument'
  | 'unknown_previous_snapshot'
  | 'config_validation'
  | 'corrupt'
  | 'not_found'
  | 'too_early'
  | 'payload_too_large'
  | 'unauthenticated';

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
  // control characters (a NUL above all) are no file name on any store
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing them is the point
  if (/[\u0000-\u001f\u007f]/.test(identity))
    throw new HotLoadError(
      'invalid_argument',
      `identity ${JSON.stringify(identity)} contains a control character`,
    );
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

/**
 * Buffers of a snapshot no longer served, kept to receive the next delta: writing into
 * memory already mapped avoids the page faults of fresh allocations (about a third of a
 * delta's cost on a 100 MB model).
 */
export class SpareBuffers {
  private bySize = new Map<number, Buffer[]>();

  take(size: number): Buffer {
    return this.bySize.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
  }

  /** Keeps `buffers` for reuse, dropping what was kept before (one snapshot's worth). */
  keep(buffers: Iterable<Buffer>): void {
    this.bySize = new Map();
    this.give(buffers);
  }

  /** Returns taken buffers unused (a load that failed). */
  give(buffers: Iterable<Buffer>): void {
    for (const b of buffers) {
      const list = this.bySize.get(b.length) ?? [];
      list.push(b);
      this.bySize.set(b.length, list);
    }
  }
}

export interface IncrementalMetadata {
  previous_snapshot_identity: string;
  compression_format: 'arc_v2';
  checksum_format: 'alder32';
}

/**
 * Reads a full snapshot, or reconstructs a delta against `held` (which must be the snapshot
 * named by previous_snapshot_identity). `prefetched` holds files already fetched by hints;
 * `spare` gives the buffers a delta is decoded into. `held` is never modified: on any error
 * the replica still holds (and serves) exactly what it held.
 */
export async function readSnapshot(
  reader: SnapshotReader,
  identity: string,
  incremental: IncrementalMetadata | undefined,
  held: HeldSnapshot | null,
  prefetched: Map<string, Buffer> = new Map(),
  spare: SpareBuffers = new SpareBuffers(),
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
    return applyDelta(cached, identity, manifest, held, spare);
  }
  const names = await cached.list();
  if (!names.includes('config.json') && !names.includes(ADAPTER_CONFIG))
    throw new HotLoadError(
      'not_found',
      `${reader.where} has no config.json (nor ${ADAPTER_CONFIG}): is '${identity}' uploaded?`,
    );
  const wanted = names.filter((n) => n !== DELTA_MANIFEST);
  const bodies = await Promise.all(wanted.map((n) => cached.read(n)));
  return { identity, files: new Map(wanted.map((n, i) => [n, bodies[i] as Buffer])) };
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/**
 * The snapshot a delta stands for, decoded into spare buffers. Weights files are checked the
 * way arc_v2 defines: each payload must inflate to exactly its tensor's size and each tensor's
 * new bytes must have the Adler-32 the delta carries; header and layout come from the held
 * file (a delta reproduces them by construction). That is the whole file, so the manifest's
 * sha256 of the reconstruction is not recomputed (it would be a second pass over every
 * byte). Small copied files (config, tokenizer) are checked against the manifest's sha256.
 */
async function applyDelta(
  delta: SnapshotReader,
  identity: string,
  manifest: DeltaManifest,
  held: HeldSnapshot,
  spare: SpareBuffers,
): Promise<HeldSnapshot> {
  // non-weight files the delta does not carry stay as they were
  const files = new Map(held.files);
  const made: Buffer[] = [];
  try {
    for (const f of manifest.files) {
      const where = `${delta.where}/${f.path}`;
      const stored = await delta.read(f.path);
      if (stored.length !== f.size)
        throw corrupt(`${where} has ${stored.length} bytes, expected ${f.size} (truncated?)`);
      if (!f.delta) {
        if (sha256(stored) !== f.sha256) throw corrupt(`${where} fails its sha256 checksum`);
        files.set(f.path, stored);
        continue;
      }
      const base = held.files.get(f.path);
      if (!base || base.length !== f.fullSize)
        throw corrupt(
          `${where} is a delta of a ${f.fullSize}-byte file, but snapshot '${held.identity}' has ${base ? `${base.length} bytes of` : 'no'} ${f.path}`,
        );
      const out = spare.take(base.length);
      made.push(out);
      await applyDeltaFileAsync(base, stored, {
        into: out,
        prevSource: `snapshot '${held.identity}'/${f.path}`,
        deltaSource: where,
      });
      files.set(f.path, out);
    }
  } catch (err) {
    spare.give(made);
    if (err instanceof HotLoadError) throw err;
    throw corrupt(`delta snapshot '${identity}' is corrupt: ${(err as Error).message}`);
  }
  return { identity, files };
}

const corrupt = (message: string) => new HotLoadError('corrupt', message);

const DTYPES = new Set<string>(['F32', 'BF16', 'F16', 'F64']);

/** The model weights of a held snapshot, by HF tensor name: views of the files' bytes. */
export function snapshotWeights(held: HeldSnapshot): Map<string, RawWeight> {
  const out = new Map<string, RawWeight>();
  for (const [name, buf] of held.files) {
    if (!WEIGHTS.test(name) || SKIP.test(name)) continue;
    const where = `${held.identity || 'base model'}/${name}`;
    let st: ReturnType<typeof parseRawSafetensors>;
    try {
      st = parseRawSafetensors(buf, where);
    } catch (err) {
      throw corrupt((err as Error).message);
    }
    for (const e of st.entries) {
      if (!DTYPES.has(e.dtype))
        throw new HotLoadError(
          'invalid_argument',
          `${where}: tensor '${e.name}' is ${e.dtype}; serving takes F32, BF16, F16 or F64`,
        );
      out.set(e.name, { shape: e.shape, dtype: e.dtype as WeightDtype, bytes: tensorBytes(st, e) });
    }
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
  base: ReadonlyMap<string, DecoderWeight>,
): Promise<Map<string, DecoderWeight>> {
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
  const out = new Map<string, DecoderWeight>(base);
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
      data: mergeLinear(float32Of(w), a.data, b.data, scale, o, i, adapter.rank),
    });
  }
  return out;
}

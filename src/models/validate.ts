// Validation of an HF model directory before anything may use it: its config.json (the
// engine's rules: every field that changes the math understood), its safetensors weights
// (names, shapes and dtypes against the configuration, read from the headers only) and its
// tokenizer; and a PEFT LoRA adapter against its base. Every problem is returned at once, each naming its file and field, so an import
// can be refused with the whole list instead of one error at a time.
import type { Readable } from 'node:stream';
import { CheckpointError } from '../checkpoints/dcp/index.js';
import { parseRawHeader, type RawTensorEntry } from '../checkpoints/deltas/raw-safetensors.js';
import {
  ADAPTER_WEIGHTS,
  asSource,
  type ExportSource,
  readPeftAdapter,
  toPeftName,
} from '../checkpoints/exports/index.js';
import { safetensorsIndexSchema } from '../checkpoints/safetensors.js';
import { baseTensorShapes, checkHfConfig, type ModelConfig } from '../engine/index.js';

export interface ModelProblem {
  /** The file the problem is in (`config.json`, `model-00001-of-00002.safetensors`), or `(directory)`. */
  file: string;
  /** The field or tensor: a config.json key path, a tensor name, `weights`, `tokenizer`. */
  field: string;
  message: string;
}

export interface ModelValidation {
  ok: boolean;
  /** The engine configuration, when config.json is valid. */
  config: ModelConfig | null;
  problems: ModelProblem[];
  /** Tensors found in the weight files. */
  tensors: number;
}

/** Weight dtypes the engine loads (converted to float32 on load). */
const WEIGHT_DTYPES = new Set(['F32', 'BF16', 'F16', 'F64']);
const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';

/**
 * Buffers older transformers saved next to the weights; they are recomputed, never loaded.
 * (The engine recomputes RoPE from the config.)
 */
function isHarmlessBuffer(name: string): boolean {
  return /(^|\.)rotary_emb\.inv_freq$/.test(name);
}

/** Line and column of a character offset, for JSON syntax errors. */
function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return `line ${line}, column ${offset - before.lastIndexOf('\n')}`;
}

async function readJson(
  source: ExportSource,
  file: string,
  problems: ModelProblem[],
): Promise<unknown> {
  const text = (await source.read(file)).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    const m = /position (\d+)/.exec((err as Error).message);
    const where = m ? ` at ${lineColumn(text, Number(m[1]))}` : '';
    problems.push({
      file,
      field: '(file)',
      message: `is not valid JSON${where}: ${(err as Error).message}`,
    });
    return undefined;
  }
}

/** The first `n` bytes of a file (or all of it when shorter), without reading the rest. */
async function readPrefix(source: ExportSource, file: string, n: number): Promise<Buffer> {
  const stream: Readable = await source.stream(file);
  const chunks: Buffer[] = [];
  let have = 0;
  try {
    for await (const chunk of stream) {
      const b = chunk as Buffer;
      chunks.push(b);
      have += b.length;
      if (have >= n) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, n);
}

/** A safetensors file's tensor entries from its header. */
async function readHeader(
  source: ExportSource,
  file: string,
  problems: ModelProblem[],
): Promise<RawTensorEntry[] | null> {
  const size = await source.size(file);
  if (size === null) {
    problems.push({ file, field: '(file)', message: 'is missing' });
    return null;
  }
  try {
    const first = await readPrefix(source, file, 8);
    if (first.length < 8)
      throw new Error(`${file}: ${size} bytes is too short for a safetensors file`);
    const headerLen = Number(first.readBigUInt64LE(0));
    if (8 + headerLen > size)
      throw new Error(
        `${file}: header length ${headerLen} does not fit the file's ${size} bytes (truncated?)`,
      );
    const head = await readPrefix(source, file, 8 + headerLen);
    return parseRawHeader(head, size, file).entries;
  } catch (err) {
    const message = (err as Error).message.replace(new RegExp(`^${file}: `), '');
    problems.push({ file, field: '(header)', message });
    return null;
  }
}

interface FoundTensor {
  file: string;
  entry: RawTensorEntry;
}

/** Every tensor of the weight files (sharded with an index, or one model.safetensors). */
async function readWeights(
  source: ExportSource,
  problems: ModelProblem[],
): Promise<{ tensors: Map<string, FoundTensor>; files: string[]; unreadable: number } | null> {
  let files: string[];
  let weightMap: Record<string, string> | null = null;
  if ((await source.size(INDEX_FILE)) !== null) {
    const raw = await readJson(source, INDEX_FILE, problems);
    if (raw === undefined) return null;
    const parsed = safetensorsIndexSchema.safeParse(raw);
    if (!parsed.success) {
      for (const i of parsed.error.issues)
        problems.push({
          file: INDEX_FILE,
          field: i.path.join('.') || '(root)',
          message: i.message,
        });
      return null;
    }
    weightMap = parsed.data.weight_map;
    files = [...new Set(Object.values(weightMap))].sort();
  } else if ((await source.size(SINGLE_FILE)) !== null) files = [SINGLE_FILE];
  else {
    const legacy = ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'model.pt'];
    const found: string[] = [];
    for (const f of legacy) if ((await source.size(f)) !== null) found.push(f);
    problems.push({
      file: '(directory)',
      field: 'weights',
      message: `no ${SINGLE_FILE} or ${INDEX_FILE}${found.length ? ` (found ${found.join(', ')}: convert the weights to safetensors)` : ''}`,
    });
    return null;
  }
  const tensors = new Map<string, FoundTensor>();
  let unreadable = 0;
  for (const file of files) {
    const entries = await readHeader(source, file, problems);
    if (!entries) {
      unreadable++;
      continue;
    }
    for (const entry of entries) {
      const seen = tensors.get(entry.name);
      if (seen) {
        problems.push({ file, field: entry.name, message: `is also in ${seen.file}` });
        continue;
      }
      tensors.set(entry.name, { file, entry });
      if (weightMap && weightMap[entry.name] !== file)
        problems.push({
          file,
          field: entry.name,
          message:
            weightMap[entry.name] === undefined
              ? `is not listed in ${INDEX_FILE}`
              : `is listed in ${INDEX_FILE} under ${weightMap[entry.name]}`,
        });
    }
    if (weightMap)
      for (const [name, f] of Object.entries(weightMap))
        if (f === file && !entries.some((e) => e.name === name))
          problems.push({ file: INDEX_FILE, field: name, message: `is not in ${file}` });
  }
  return { tensors, files, unreadable };
}

function checkTensors(
  config: ModelConfig,
  found: Map<string, FoundTensor>,
  files: string[],
  problems: ModelProblem[],
): void {
  const expected = baseTensorShapes(config);
  const where = files.length === 1 ? (files[0] as string) : INDEX_FILE;
  for (const [name, shape] of expected) {
    const t = found.get(name);
    if (!t) {
      problems.push({
        file: where,
        field: name,
        message: `is missing (shape [${shape}] expected)`,
      });
      continue;
    }
    const { dtype, shape: got } = t.entry;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i]))
      problems.push({
        file: t.file,
        field: name,
        message: `has shape [${got}] but config.json needs [${shape}]`,
      });
    if (!WEIGHT_DTYPES.has(dtype))
      problems.push({
        file: t.file,
        field: name,
        message: `has dtype ${dtype}; the engine loads F32, BF16, F16 or F64 weights`,
      });
  }
  for (const [name, t] of found) {
    if (expected.has(name) || isHarmlessBuffer(name)) continue;
    const message =
      name === 'lm_head.weight' && config.tieWordEmbeddings
        ? 'is present although tie_word_embeddings is true (the unembedding is the embedding); remove it or untie the embeddings'
        : /\.bias$/.test(name)
          ? 'is a bias this configuration does not have (check attention_bias / mlp_bias in config.json)'
          : 'is not a tensor of this configuration';
    problems.push({ file: t.file, field: name, message });
  }
}

/** The tokenizer the directory must carry, and that its ids fit the vocabulary. */
async function checkTokenizer(
  source: ExportSource,
  config: ModelConfig | null,
  problems: ModelProblem[],
): Promise<void> {
  if ((await source.size('tokenizer_config.json')) !== null) {
    const cfg = await readJson(source, 'tokenizer_config.json', problems);
    // temper's own byte tokenizer is declared here instead of a tokenizer.json
    if (
      typeof cfg === 'object' &&
      cfg !== null &&
      (cfg as Record<string, unknown>).temper_tokenizer === 'byte'
    )
      return;
  }
  if ((await source.size('tokenizer.json')) === null) {
    problems.push({
      file: '(directory)',
      field: 'tokenizer',
      message:
        'no tokenizer.json (a HuggingFace fast tokenizer is needed to render and score text)',
    });
    return;
  }
  const tok = await readJson(source, 'tokenizer.json', problems);
  if (typeof tok !== 'object' || tok === null) {
    if (tok !== undefined)
      problems.push({
        file: 'tokenizer.json',
        field: '(root)',
        message: 'must hold a JSON object',
      });
    return;
  }
  const t = tok as { model?: { vocab?: unknown }; added_tokens?: unknown };
  if (typeof t.model !== 'object' || t.model === null) {
    problems.push({ file: 'tokenizer.json', field: 'model', message: 'is missing' });
    return;
  }
  let maxId = -1;
  const vocab = t.model.vocab;
  if (Array.isArray(vocab))
    maxId = vocab.length - 1; // Unigram: [[piece, score], ...]
  else if (typeof vocab === 'object' && vocab !== null)
    for (const id of Object.values(vocab)) if (typeof id === 'number') maxId = Math.max(maxId, id);
  if (Array.isArray(t.added_tokens))
    for (const a of t.added_tokens)
      if (typeof a === 'object' && a !== null && typeof (a as { id?: unknown }).id === 'number')
        maxId = Math.max(maxId, (a as { id: number }).id);
  if (config && maxId >= config.vocabSize)
    problems.push({
      file: 'tokenizer.json',
      field: 'model.vocab',
      message: `has token id ${maxId}, outside the model's vocab_size ${config.vocabSize}`,
    });
}

/**
 * Validates an HF model directory (a local path or an object-store prefix as an ExportSource):
 * config.json, the safetensors weights' names, shapes and dtypes, and the tokenizer. Never
 * throws for a bad directory: every problem comes back in `problems`.
 */
export async function validateModelDirectory(dir: string | ExportSource): Promise<ModelValidation> {
  const source = asSource(dir);
  const problems: ModelProblem[] = [];
  let config: ModelConfig | null = null;
  if ((await source.size('config.json')) === null)
    problems.push({ file: 'config.json', field: '(file)', message: 'is missing' });
  else {
    const raw = await readJson(source, 'config.json', problems);
    if (raw !== undefined) {
      const checked = checkHfConfig(raw);
      config = checked.config;
      for (const p of checked.problems) problems.push({ file: 'config.json', ...p });
    }
  }
  const weights = await readWeights(source, problems);
  // (an unreadable file is one problem, not one per tensor it should have held)
  if (weights && config && weights.unreadable === 0)
    checkTensors(config, weights.tensors, weights.files, problems);
  await checkTokenizer(source, config, problems);
  return { ok: problems.length === 0, config, problems, tensors: weights?.tensors.size ?? 0 };
}

/**
 * Validates a PEFT LoRA adapter directory against its base model's configuration: the adapter
 * must be one the engine applies exactly (readPeftAdapter's rules: plain LoRA, safetensors)
 * and every lora_A [r, in] / lora_B [out, r] must fit the base model's linear it adapts.
 */
export async function validateAdapterDirectory(
  dir: string | ExportSource,
  base: ModelConfig,
): Promise<{ ok: boolean; problems: ModelProblem[]; tensors: number }> {
  const problems: ModelProblem[] = [];
  let adapter: Awaited<ReturnType<typeof readPeftAdapter>>;
  try {
    adapter = await readPeftAdapter(asSource(dir));
  } catch (err) {
    if (!(err instanceof CheckpointError)) throw err;
    const file = err.file ?? '(directory)';
    const message = err.message.replace(/^\S+: /, '');
    problems.push({ file, field: '(adapter)', message });
    return { ok: false, problems, tensors: 0 };
  }
  const shapes = baseTensorShapes(base);
  const lmHead: number[] = [base.vocabSize, base.hiddenSize];
  for (const [name, t] of adapter.tensors) {
    const module = name.replace(/\.lora_[AB]\.weight$/, '');
    const field = toPeftName(name);
    const target =
      module === 'lm_head'
        ? base.tieWordEmbeddings
          ? undefined
          : lmHead
        : shapes.get(`${module}.weight`);
    if (!target) {
      problems.push({
        file: ADAPTER_WEIGHTS,
        field,
        message:
          module === 'lm_head'
            ? 'adapts lm_head, but the base model ties it to the embeddings'
            : `adapts ${module}, which the base model does not have`,
      });
      continue;
    }
    const [out, inDim] = target as [number, number];
    const want = name.endsWith('.lora_A.weight') ? [adapter.rank, inDim] : [out, adapter.rank];
    if (t.shape.length !== 2 || t.shape[0] !== want[0] || t.shape[1] !== want[1])
      problems.push({
        file: ADAPTER_WEIGHTS,
        field,
        message: `has shape [${t.shape}] but rank ${adapter.rank} on the base model's ${module} needs [${want}]`,
      });
  }
  return { ok: problems.length === 0, problems, tensors: adapter.tensors.size };
}

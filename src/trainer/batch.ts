/**
 * Datums from the wire to the engine and back. A datum's model input is T[0..N-1]; with
 * `target_tokens` of shape [N] (or [N, K] for top-K targets) the engine scores target j at
 * position j; without it (a weight-based datum) the targets are the next tokens and the
 * engine sees T[0..N-2] → T[1..N-1]. A top-K datum becomes K engine sequences, one per target
 * column, so one forward pass and one backward pass cover every column.
 *
 * Everything a bad datum can get wrong (shapes, token ids outside the vocabulary, lengths
 * past the context) is checked here, before the engine runs, so a rejected batch changes
 * nothing.
 */
import type { Sequence } from '../engine/model.js';
import type { Datum } from '../gen/temper/trainer/v1/trainer_pb.js';
import { FIELDS, type LossDatum, type TensorData } from '../losses/index.js';
import { TrainerError } from './errors.js';
import { type DecodedArray, decodeInt32, decodeTensor } from './wire.js';

export interface BatchLimits {
  vocabSize: number;
  maxContextLength: number;
}

export interface DatumLayout {
  /** Rows (target positions) of the datum. */
  rows: number;
  /** Targets per row (1, or K for top-K). */
  k: number;
  /** Shape of the datum's logprobs: [rows] or [rows, k]. */
  shape: number[];
  /** Index of the datum's first engine sequence. */
  firstSequence: number;
  /** Offset of the datum's first logprob in the engine's flat output. */
  flatOffset: number;
}

export interface DecodedBatch {
  /** Engine sequences, K per top-K datum, in datum order. */
  sequences: Sequence[];
  /** The datums as losses read them. */
  datums: LossDatum[];
  layouts: DatumLayout[];
  /** Total target positions the engine scores (the length of its flat output). */
  totalRows: number;
}

function datumTokens(d: Datum, i: number): Int32Array {
  const parts: Int32Array[] = [];
  d.modelInput.forEach((chunk, c) => {
    if (chunk.chunk.case !== 'encodedText') {
      throw new TrainerError(
        'invalid_datum',
        `datum ${i}: model_input chunk ${c} is not an encoded_text chunk; only token chunks are supported`,
        { datum: i, field: 'model_input' },
      );
    }
    parts.push(decodeInt32(chunk.chunk.value.tokens, `datum ${i}: model_input chunk ${c}`));
  });
  if (parts.length === 1) return parts[0]!;
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Int32Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function checkIds(ids: ArrayLike<number>, vocab: number, i: number, field: string): void {
  for (let j = 0; j < ids.length; j++) {
    const id = ids[j]!;
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new TrainerError(
        'out_of_vocab',
        `datum ${i}: ${field}[${j}] = ${id} is outside the vocabulary [0, ${vocab}) of this model`,
        { datum: i, field },
      );
    }
  }
}

/** Decodes, validates and lays out a batch of wire datums. */
export function decodeBatch(data: readonly Datum[], limits: BatchLimits): DecodedBatch {
  if (data.length === 0) {
    throw new TrainerError('invalid_datum', 'the batch is empty; send at least one datum', {
      field: 'data',
    });
  }
  const sequences: Sequence[] = [];
  const datums: LossDatum[] = [];
  const layouts: DatumLayout[] = [];
  let flat = 0;
  data.forEach((d, i) => {
    const tokens = datumTokens(d, i);
    const inputs: Record<string, TensorData> = {};
    for (const [name, t] of Object.entries(d.lossFnInputs)) {
      const decoded = decodeTensor(t, `datum ${i}: loss_fn_inputs.${name}`);
      inputs[name] = { data: decoded.data, shape: decoded.shape };
    }
    const target = inputs[FIELDS.targetTokens];
    let input: Int32Array;
    let targets: DecodedArray;
    let rows: number;
    let k: number;
    if (target) {
      const shape = target.shape ?? [target.data.length];
      if (shape.length < 1 || shape.length > 2) {
        throw new TrainerError(
          'invalid_datum',
          `datum ${i}: loss_fn_inputs.target_tokens has shape [${shape.join(', ')}]; expected [N] or [N, K]`,
          { datum: i, field: FIELDS.targetTokens },
        );
      }
      rows = shape[0]!;
      k = shape.length === 2 ? shape[1]! : 1;
      if (rows !== tokens.length) {
        throw new TrainerError(
          'invalid_datum',
          `datum ${i}: model_input has ${tokens.length} tokens but target_tokens has ${rows} rows; they must match (targets are the next tokens)`,
          { datum: i, field: FIELDS.targetTokens },
        );
      }
      if (k < 1) {
        throw new TrainerError('invalid_datum', `datum ${i}: target_tokens has no columns`, {
          datum: i,
          field: FIELDS.targetTokens,
        });
      }
      input = tokens;
      targets = target.data as DecodedArray;
    } else {
      if (tokens.length < 2) {
        throw new TrainerError(
          'invalid_datum',
          `datum ${i}: a datum without target_tokens needs at least two model_input tokens (the targets are the next tokens)`,
          { datum: i, field: 'model_input' },
        );
      }
      rows = tokens.length - 1;
      k = 1;
      input = tokens.subarray(0, rows);
      targets = tokens.subarray(1);
    }
    if (rows === 0) {
      throw new TrainerError('invalid_datum', `datum ${i}: model_input is empty`, {
        datum: i,
        field: 'model_input',
      });
    }
    if (rows > limits.maxContextLength) {
      throw new TrainerError(
        'invalid_datum',
        `datum ${i}: ${rows} positions exceed this model's context of ${limits.maxContextLength} tokens; truncate the datum`,
        { datum: i, field: 'model_input' },
      );
    }
    checkIds(input, limits.vocabSize, i, 'model_input');
    checkIds(targets, limits.vocabSize, i, FIELDS.targetTokens);
    layouts.push({
      rows,
      k,
      shape: k === 1 && target?.shape?.length !== 2 ? [rows] : [rows, k],
      firstSequence: sequences.length,
      flatOffset: flat,
    });
    if (k === 1) {
      sequences.push({ tokens: input, targets });
    } else {
      for (let c = 0; c < k; c++) {
        const column = new Int32Array(rows);
        for (let j = 0; j < rows; j++) column[j] = targets[j * k + c]!;
        sequences.push({ tokens: input, targets: column });
      }
    }
    flat += rows * k;
    datums.push({ model_input: Array.from(input), loss_fn_inputs: inputs });
  });
  return { sequences, datums, layouts, totalRows: flat };
}

/** Per-datum logprobs ([rows] or row-major [rows, k]) from the engine's flat output. */
export function splitLogprobs(batch: DecodedBatch, flat: Float32Array): Float32Array[] {
  return batch.layouts.map((l) => {
    if (l.k === 1) return flat.slice(l.flatOffset, l.flatOffset + l.rows);
    const out = new Float32Array(l.rows * l.k);
    for (let c = 0; c < l.k; c++) {
      const base = l.flatOffset + c * l.rows;
      for (let j = 0; j < l.rows; j++) out[j * l.k + c] = flat[base + j]!;
    }
    return out;
  });
}

/**
 * The engine's flat d(loss)/d(logprob) from per-datum gradients laid out like splitLogprobs'
 * output. Each gradient must have the datum's rows × k values, all finite.
 */
export function packGradients(
  batch: DecodedBatch,
  grads: readonly ArrayLike<number>[],
): Float32Array {
  if (grads.length !== batch.layouts.length) {
    throw new TrainerError(
      'invalid_datum',
      `got gradients for ${grads.length} datums but the forward pass had ${batch.layouts.length}`,
      { field: 'd_logprobs' },
    );
  }
  const out = new Float32Array(batch.totalRows);
  batch.layouts.forEach((l, i) => {
    const g = grads[i]!;
    if (g.length !== l.rows * l.k) {
      throw new TrainerError(
        'invalid_datum',
        `datum ${i}: got ${g.length} gradient values but its logprobs have ${l.rows * l.k}`,
        { datum: i, field: 'd_logprobs' },
      );
    }
    for (let c = 0; c < l.k; c++) {
      const base = l.flatOffset + c * l.rows;
      for (let j = 0; j < l.rows; j++) {
        const v = g[j * l.k + c]!;
        if (v - v !== 0) {
          throw new TrainerError(
            'invalid_datum',
            `datum ${i}: d_logprobs[${j * l.k + c}] is ${v}; gradients must be finite`,
            { datum: i, field: 'd_logprobs' },
          );
        }
        out[base + j] = v;
      }
    }
  });
  return out;
}

/** A batch for embeddings: each datum's whole model input, one engine sequence per datum. */
export interface DecodedTokenBatch {
  sequences: { tokens: Int32Array }[];
}

/**
 * Decodes and validates a batch whose datums are embedded (pooled hidden states of the whole
 * model input T[0..N-1]); loss_fn_inputs are the client's business and are not read.
 */
export function decodeTokenBatch(data: readonly Datum[], limits: BatchLimits): DecodedTokenBatch {
  if (data.length === 0) {
    throw new TrainerError('invalid_datum', 'the batch is empty; send at least one datum', {
      field: 'data',
    });
  }
  const sequences = data.map((d, i) => {
    const tokens = datumTokens(d, i);
    if (tokens.length === 0) {
      throw new TrainerError('invalid_datum', `datum ${i}: model_input is empty`, {
        datum: i,
        field: 'model_input',
      });
    }
    if (tokens.length > limits.maxContextLength) {
      throw new TrainerError(
        'invalid_datum',
        `datum ${i}: ${tokens.length} tokens exceed this model's context of ${limits.maxContextLength} tokens; truncate the datum`,
        { datum: i, field: 'model_input' },
      );
    }
    checkIds(tokens, limits.vocabSize, i, 'model_input');
    return { tokens };
  });
  return { sequences };
}

/**
 * The engine's flat d(loss)/d(pooled hidden) ([datums × hidden]) from per-datum gradients of
 * `hidden` finite values each.
 */
export function packEmbeddingGradients(
  datums: number,
  hidden: number,
  grads: readonly ArrayLike<number>[],
): Float32Array {
  if (grads.length !== datums) {
    throw new TrainerError(
      'invalid_datum',
      `got embedding gradients for ${grads.length} datums but the forward pass had ${datums}`,
      { field: 'd_embeddings' },
    );
  }
  const out = new Float32Array(datums * hidden);
  grads.forEach((g, i) => {
    if (g.length !== hidden) {
      throw new TrainerError(
        'invalid_datum',
        `datum ${i}: got ${g.length} embedding gradient values but its embedding has ${hidden}`,
        { datum: i, field: 'd_embeddings' },
      );
    }
    for (let j = 0; j < hidden; j++) {
      const v = g[j]!;
      if (v - v !== 0) {
        throw new TrainerError(
          'invalid_datum',
          `datum ${i}: d_embeddings[${j}] is ${v}; gradients must be finite`,
          { datum: i, field: 'd_embeddings' },
        );
      }
      out[i * hidden + j] = v;
    }
  });
  return out;
}

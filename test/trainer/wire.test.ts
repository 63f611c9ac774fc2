// Tensor codec of the trainer wire (dense little-endian tensors, batched per-datum outputs).

import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import {
  BatchedTensorSchema,
  DatumSchema,
  DType,
  TensorSchema,
} from '../../src/gen/temper/trainer/v1/trainer_pb.js';
import { decodeBatch, packGradients, splitLogprobs } from '../../src/trainer/batch.js';
import {
  decodeBatched,
  decodeTensor,
  encodeArray,
  encodeBatched,
  encodeTensor,
} from '../../src/trainer/wire.js';
import { wireDatum } from './helpers.js';

describe('trainer wire tensors', () => {
  it('round-trips every dtype', () => {
    const values = [0, 1, -2, 3, 250];
    for (const dtype of ['float32', 'float64', 'int32', 'int64'] as const) {
      const t = create(TensorSchema, encodeTensor(values, dtype, [5]));
      const d = decodeTensor(t, 'x');
      expect(Array.from(d.data)).toEqual(values);
      expect(d.shape).toEqual([5]);
    }
    const bf = decodeTensor(create(TensorSchema, encodeTensor([1.5, -0.25, 3], 'bfloat16')), 'x');
    expect(Array.from(bf.data)).toEqual([1.5, -0.25, 3]);
  });

  it('decodes unaligned little-endian bytes', () => {
    const bytes = new Uint8Array(13);
    bytes.set(encodeArray([7, -8, 9], 'int32'), 1);
    const t = create(TensorSchema, { data: bytes.subarray(1), dtype: DType.INT32, shape: [3n] });
    expect(Array.from(decodeTensor(t, 'x').data)).toEqual([7, -8, 9]);
  });

  it('rejects a shape that does not match the data, a ragged buffer and an unset dtype', () => {
    const t = create(TensorSchema, encodeTensor([1, 2, 3], 'float32', [2, 2]));
    expect(() => decodeTensor(t, 'w')).toThrow(/shape \[2, 2\] \(4 values\) but its data holds 3/);
    const ragged = create(TensorSchema, { data: new Uint8Array(6), dtype: DType.FLOAT32 });
    expect(() => decodeTensor(ragged, 'w')).toThrow(/not a whole number of float32/);
    const none = create(TensorSchema, { data: new Uint8Array(4) });
    expect(() => decodeTensor(none, 'w')).toThrow(/dtype/);
  });

  it('batches per-datum tensors with int64 byte offsets', () => {
    const b = create(BatchedTensorSchema, encodeBatched([[1, 2, 3], [], [4, 5, 6, 7]], 'float32'));
    expect(Array.from(new BigInt64Array(b.offsets.slice().buffer))).toEqual([0n, 12n, 12n, 28n]);
    const { parts } = decodeBatched(b, 'lp');
    expect(parts.map((p) => Array.from(p))).toEqual([[1, 2, 3], [], [4, 5, 6, 7]]);
    const k2 = create(BatchedTensorSchema, encodeBatched([[1, 2, 3]], 'float32', [2]));
    expect(() => decodeBatched(k2, 'lp')).toThrow(/not a whole number of rows/);
  });

  it('lays out top-K datums as K engine sequences and back', () => {
    const batch = decodeBatch(
      [
        create(DatumSchema, wireDatum([1, 2, 3], [2, 3, 4], { weights: [1, 1, 1] })),
        create(DatumSchema, {
          ...wireDatum([5, 6], [0, 0]),
          lossFnInputs: { target_tokens: encodeTensor([6, 7, 8, 9], 'int64', [2, 2]) },
        }),
      ],
      { vocabSize: 37, maxContextLength: 16 },
    );
    expect(batch.sequences.map((s) => Array.from(s.targets))).toEqual([
      [2, 3, 4],
      [6, 8],
      [7, 9],
    ]);
    expect(batch.layouts.map((l) => l.shape)).toEqual([[3], [2, 2]]);
    const flat = Float32Array.from([10, 11, 12, 20, 21, 30, 31]);
    const split = splitLogprobs(batch, flat);
    expect(split.map((s) => Array.from(s))).toEqual([
      [10, 11, 12],
      [20, 30, 21, 31],
    ]);
    expect(Array.from(packGradients(batch, split))).toEqual(Array.from(flat));
  });

  it('uses next tokens as targets for a datum without target_tokens', () => {
    const d = create(DatumSchema, { ...wireDatum([1, 2, 3, 4], []), lossFnInputs: {} });
    const batch = decodeBatch([d], { vocabSize: 37, maxContextLength: 16 });
    expect(Array.from(batch.sequences[0]!.tokens)).toEqual([1, 2, 3]);
    expect(Array.from(batch.sequences[0]!.targets)).toEqual([2, 3, 4]);
  });
});

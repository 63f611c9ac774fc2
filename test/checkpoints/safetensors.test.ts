import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  writeSafetensors,
} from '../../src/checkpoints/safetensors.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/engine/dtype.js';

describe('dtype conversion', () => {
  it('bf16 round-to-nearest-even and exact widening', () => {
    const x = Float32Array.from([1, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.38e38, 3.4e38, 0, -0]);
    const back = bf16ToF32(f32ToBf16(x));
    expect(Array.from(back)).toEqual([
      1,
      -2.5,
      1,
      1 + 2 ** -6,
      3.3762391092936863e38,
      Number.POSITIVE_INFINITY,
      0,
      -0,
    ]);
  });
  it('f16 handles normals, subnormals, overflow and NaN', () => {
    const x = Float32Array.from([1, 65504, 2 ** -24, 2 ** -15, 1e6, Number.NaN, -0.333251953125]);
    const back = f16ToF32(f32ToF16(x));
    expect(back[0]).toBe(1);
    expect(back[1]).toBe(65504);
    expect(back[2]).toBe(2 ** -24);
    expect(back[3]).toBe(2 ** -15);
    expect(back[4]).toBe(Number.POSITIVE_INFINITY);
    expect(back[5]).toBeNaN();
    expect(back[6]).toBe(-0.333251953125);
  });
});

describe('safetensors', () => {
  const tensors = new Map([
    ['b.weight', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
    ['a.bias', { shape: [1], data: Float32Array.from([-0.5]) }],
  ]);
  it('round-trips float32 and bfloat16 with metadata', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'st-'));
    await writeSafetensors(join(dir, 'x.safetensors'), tensors, { metadata: { format: 'pt' } });
    const back = await readSafetensors(join(dir, 'x.safetensors'));
    expect(back.metadata).toEqual({ format: 'pt' });
    expect(back.tensors.get('b.weight')).toEqual(tensors.get('b.weight'));
    const bf = parseSafetensors(serializeSafetensors(tensors, { dtype: 'BF16' }));
    expect(Array.from(bf.tensors.get('b.weight')!.data)).toEqual([1, 2, 3, 4, 5, 6]);
  });
  it('names the problem in corrupt files', () => {
    const good = serializeSafetensors(tensors);
    expect(() => parseSafetensors(good.subarray(0, 4), 'f.safetensors')).toThrow(
      /f.safetensors: file is shorter/,
    );
    expect(() => parseSafetensors(good.subarray(0, good.length - 4), 'f.safetensors')).toThrow(
      /byte range/,
    );
    const bad = Buffer.from(good);
    bad.write('{', 8);
    bad.write('X', 9);
    expect(() => parseSafetensors(bad, 'f.safetensors')).toThrow(/not valid JSON/);
  });
});

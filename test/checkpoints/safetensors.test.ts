import {
  createReadStream,
  existsSync,
  mkdtempSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  openSafetensorsStream,
  parseSafetensors,
  parseShardIndex,
  planShards,
  readSafetensors,
  readShardedSafetensors,
  SafetensorsFileReader,
  safetensorsReadable,
  serializeSafetensors,
  type TensorMap,
  writeSafetensors,
  writeSafetensorsFile,
  writeShardedSafetensors,
} from '../../src/checkpoints/safetensors.js';
import { toHfConfig } from '../../src/engine/config.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/engine/dtype.js';
import { TransformerModel } from '../../src/engine/model.js';
import { tinyModel } from '../engine/helpers.js';
import { randomData } from './helpers.js';

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

describe('streaming safetensors', () => {
  const tensors: TensorMap = new Map([
    ['z.last', { shape: [3, 5], data: randomData(15, 1) }],
    ['a.first', { shape: [7], data: randomData(7, 2) }],
    ['m.middle', { shape: [2, 2, 2], data: randomData(8, 3) }],
    ['e.empty', { shape: [0], data: new Float32Array(0) }],
  ]);
  const specs = [...tensors.keys()]
    .sort()
    .map((name) => ({ name, shape: tensors.get(name)!.shape }));

  it('the stream writer produces exactly the serialised bytes (F32 and BF16)', async () => {
    for (const dtype of ['F32', 'BF16'] as const) {
      const { layout, stream } = safetensorsReadable(specs, (n) => tensors.get(n)!.data, {
        dtype,
        metadata: { format: 'pt' },
      });
      const bytes = Buffer.concat(await stream.toArray());
      expect(
        bytes.equals(serializeSafetensors(tensors, { dtype, metadata: { format: 'pt' } })),
      ).toBe(true);
      expect(bytes.length).toBe(layout.size);
      expect(layout.dataStart % 8).toBe(0);
    }
  });

  it('asks for each tensor only when the writer reaches it', async () => {
    const asked: string[] = [];
    const { stream } = safetensorsReadable(
      specs,
      (n) => {
        asked.push(n);
        return tensors.get(n)!.data;
      },
      { readAheadChunks: 1 },
    );
    const seen: number[] = [];
    for await (const _ of stream) seen.push(asked.length);
    expect(seen[0]).toBeLessThanOrEqual(1); // the header went out before the tensors were asked for
    expect(asked).toEqual(specs.map((s) => s.name));
    const bad = safetensorsReadable(specs, () => new Float32Array(2)).stream;
    await expect(bad.toArray()).rejects.toThrow(/has 2 values/);
  });

  it('reads a file by byte range, one tensor at a time', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'st-'));
    const path = join(dir, 'x.safetensors');
    await writeSafetensorsFile(path, specs, (n) => tensors.get(n)!.data, { metadata: { k: 'v' } });
    const reader = await SafetensorsFileReader.open(path);
    try {
      expect(reader.header.metadata).toEqual({ k: 'v' });
      expect(reader.names()).toEqual(['a.first', 'e.empty', 'm.middle', 'z.last']);
      expect(await reader.readTensor('m.middle')).toEqual(tensors.get('m.middle'));
      expect((await reader.readTensor('e.empty')).data.length).toBe(0);
      await expect(reader.readTensor('nope')).rejects.toThrow(/no tensor named 'nope'/);
    } finally {
      await reader.close();
    }
    const all = await readSafetensors(path);
    for (const [name, t] of tensors) expect(all.tensors.get(name), name).toEqual(t);
    truncateSync(path, statSync(path).size - 1);
    await expect(readSafetensors(path)).rejects.toThrow(
      /x.safetensors: tensor 'z.last' byte range/,
    );
  });

  it('reads a stream front to back across arbitrary chunk boundaries, skipping unselected tensors', async () => {
    const bytes = serializeSafetensors(tensors, { metadata: { a: 'b' } });
    for (const chunk of [1, 3, 7, 64, 1 << 16]) {
      const pieces = Array.from({ length: Math.ceil(bytes.length / chunk) }, (_, i) =>
        bytes.subarray(i * chunk, (i + 1) * chunk),
      );
      const reader = await openSafetensorsStream(Readable.from(pieces), 'mem');
      expect(reader.header.metadata).toEqual({ a: 'b' });
      const got = await reader.readAll((n) => n !== 'm.middle');
      expect([...got.tensors.keys()]).toEqual(['a.first', 'e.empty', 'z.last']);
      expect(got.tensors.get('z.last')).toEqual(tensors.get('z.last'));
    }
    const cut = await openSafetensorsStream(
      Readable.from([bytes.subarray(0, bytes.length - 5)]),
      'cut.safetensors',
    );
    await expect(cut.readAll()).rejects.toThrow(/cut.safetensors: truncated/);
    await expect(openSafetensorsStream(Readable.from([bytes.subarray(0, 5)]), 's')).rejects.toThrow(
      /shorter than the 8-byte/,
    );
    const file = join(mkdtempSync(join(tmpdir(), 'st-')), 'f.safetensors');
    writeFileSync(file, bytes);
    const fromFile = await openSafetensorsStream(
      createReadStream(file, { highWaterMark: 5 }),
      file,
    );
    expect((await fromFile.readAll()).tensors.get('a.first')).toEqual(tensors.get('a.first'));
  });

  it('decodes F16, BF16 and F64 entries written by other tools', () => {
    const f16 = f32ToF16(Float32Array.from([1, -0.5]));
    const bf = f32ToBf16(Float32Array.from([2, 3]));
    const f64 = Float64Array.from([0.25, -8]);
    const header = JSON.stringify({
      h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] },
      b: { dtype: 'BF16', shape: [2], data_offsets: [4, 8] },
      d: { dtype: 'F64', shape: [2], data_offsets: [8, 24] },
    });
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const buf = Buffer.concat([
      len,
      Buffer.from(header),
      Buffer.from(f16.buffer),
      Buffer.from(bf.buffer),
      Buffer.from(f64.buffer),
    ]);
    const { tensors: t } = parseSafetensors(buf);
    expect(Array.from(t.get('h')!.data)).toEqual([1, -0.5]);
    expect(Array.from(t.get('b')!.data)).toEqual([2, 3]);
    expect(Array.from(t.get('d')!.data)).toEqual([0.25, -8]);
  });

  it('refuses overlapping entries and unknown dtypes', () => {
    const mk = (h: object) => {
      const json = JSON.stringify(h);
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      return Buffer.concat([len, Buffer.from(json), Buffer.alloc(16)]);
    };
    expect(() =>
      parseSafetensors(
        mk({
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        }),
        'o',
      ),
    ).toThrow(/overlap/);
    expect(() =>
      parseSafetensors(mk({ a: { dtype: 'I8', shape: [2], data_offsets: [0, 2] } }), 'o'),
    ).toThrow(/unsupported dtype I8/);
  });
});

describe('sharded safetensors', () => {
  it('splits under a size limit with model.safetensors.index.json and reads back', async () => {
    const model = tinyModel({ seed: 4 });
    const tensors = model.namedTensors();
    const dir = mkdtempSync(join(tmpdir(), 'shard-'));
    const limit = 8000;
    const plan = await writeShardedSafetensors(dir, tensors, { maxShardBytes: limit });
    expect(plan.files.length).toBeGreaterThan(2);
    for (const f of plan.files) {
      expect(f.file).toMatch(
        new RegExp(`^model-\\d{5}-of-${String(plan.files.length).padStart(5, '0')}\\.safetensors$`),
      );
      if (f.specs.length > 1) expect(f.bytes).toBeLessThanOrEqual(limit);
    }
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    const total = [...tensors.values()].reduce((a, t) => a + t.data.length * 4, 0);
    expect(index.metadata).toEqual({ total_size: total });
    expect(Object.keys(index.weight_map).sort()).toEqual([...tensors.keys()].sort());
    const back = await readShardedSafetensors(dir);
    for (const [name, t] of tensors) expect(back.tensors.get(name), name).toEqual(t);
    // The engine loads the sharded directory through the index.
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'config.json'), JSON.stringify(toHfConfig(model.config)));
    const again = await TransformerModel.fromDirectory(dir, { threads: 1 });
    expect(again.getTensor('model.norm.weight')).toEqual(model.getTensor('model.norm.weight'));
  });

  it('writes one model.safetensors and no index when everything fits', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shard-'));
    const plan = await writeShardedSafetensors(dir, tinyModel().namedTensors(), { dtype: 'BF16' });
    expect(plan.files.map((f) => f.file)).toEqual(['model.safetensors']);
    expect(plan.index).toBeNull();
    expect(existsSync(join(dir, 'model.safetensors.index.json'))).toBe(false);
    expect((await readShardedSafetensors(dir)).tensors.size).toBe(tinyModel().namedTensors().size);
  });

  it('refuses index entries that leave the directory', () => {
    expect(() =>
      parseShardIndex(JSON.stringify({ weight_map: { a: '../x.safetensors' } }), 'i.json'),
    ).toThrow(/not a plain/);
    expect(() => parseShardIndex('{', 'i.json')).toThrow(/i.json: index is not valid JSON/);
    expect(
      planShards(
        [
          { name: 'big', shape: [100] },
          { name: 'small', shape: [1] },
        ],
        { maxShardBytes: 10 },
      ).files.map((f) => f.specs.map((s) => s.name)),
    ).toEqual([['big'], ['small']]);
  });
});

// Byte compatibility of our arc_v2 codec with the reference platform's published one (PyPI
// `fireworks-delta-compression`, in the Python reference environment that scripts/setup.sh
// installs), on real safetensors files: the bundled model's weights in float32 and bfloat16
// after one AdamW-sized update, and a file of mixed dtypes (F16, BF16, F32, F64, I64, an
// empty tensor). Encoded by one side, decoded by the other, both ways; the decoded files
// must be bitwise the new files.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyDeltaFile,
  encodeDeltaFile,
  parseRawSafetensors,
  serializeU8Safetensors,
  zstdDecompress,
} from '../../src/checkpoints/deltas/index.js';

const run = promisify(execFile);
const PYTHON = join(
  process.env.TEMPER_PYREF_VENV ?? join(homedir(), '.cache', 'temper', 'pyref'),
  'bin',
  'python',
);
const SCRIPT = join(import.meta.dirname, 'deltas_reference.py');
const BASE = join(
  import.meta.dirname,
  '..',
  '..',
  'catalog',
  'accounts',
  'temper',
  'models',
  'byte-lm-3m',
  'model.safetensors',
);
const VARIANTS = ['f32', 'bf16', 'mixed'] as const;

let work: string;
beforeAll(async () => {
  expect(
    existsSync(PYTHON),
    `${PYTHON} missing: run scripts/setup.sh to install the Python reference environment`,
  ).toBe(true);
  work = await mkdtemp(join(tmpdir(), 'temper-deltas-ref-'));
  await run(PYTHON, [SCRIPT, 'make', work, BASE], { maxBuffer: 16 << 20 });
});
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const file = (variant: string, name: string) =>
  readFile(join(work, variant, `${name}.safetensors`));

describe('arc_v2 against the reference implementation (fireworks-delta-compression)', () => {
  it('we decode the reference encoder’s deltas to the exact new files', async () => {
    for (const v of VARIANTS) {
      const [prev, next, py] = await Promise.all([
        file(v, 'prev'),
        file(v, 'next'),
        file(v, 'py_delta'),
      ]);
      expect(applyDeltaFile(prev, py, { deltaSource: `${v}/py_delta` }).equals(next), v).toBe(true);
    }
  });

  it('we write what the reference writes: same checksums, same XOR payloads, same container', async () => {
    for (const v of VARIANTS) {
      const [prev, next, py] = await Promise.all([
        file(v, 'prev'),
        file(v, 'next'),
        file(v, 'py_delta'),
      ]);
      const ours = encodeDeltaFile(prev, next);
      const a = parseRawSafetensors(ours.file, 'ours');
      const b = parseRawSafetensors(py, 'reference');
      // Same tensors, U8 payloads, in the same order; the same Adler-32 strings.
      expect(a.entries.map((e) => [e.name, e.dtype])).toEqual(
        b.entries.map((e) => [e.name, e.dtype]),
      );
      expect(a.metadata).toEqual(b.metadata);
      // The payloads are zstd frames of the same XOR bytes (the frames themselves differ:
      // the reference compresses with zstd's multi-threaded mode sized to its machine).
      const p = parseRawSafetensors(prev, 'prev');
      for (const e of a.entries) {
        const len = p.byName.get(e.name)!.end - p.byName.get(e.name)!.begin;
        if (len === 0) continue;
        const be = b.byName.get(e.name)!;
        const ours1 = zstdDecompress(
          a.file.subarray(a.dataStart + e.begin, a.dataStart + e.end),
          len,
        );
        const ref1 = zstdDecompress(
          b.file.subarray(b.dataStart + be.begin, b.dataStart + be.end),
          len,
        );
        expect(ours1.equals(ref1), `${v}/${e.name}`).toBe(true);
      }
      // Given the reference's payloads, our container writer lays the file out byte for
      // byte as the reference did, except for the order of the __metadata__ keys (Python's
      // safetensors writes them in hash-map order; we sort them).
      const payloads = new Map(
        b.entries.map((e) => [e.name, b.file.subarray(b.dataStart + e.begin, b.dataStart + e.end)]),
      );
      const rebuilt = parseRawSafetensors(serializeU8Safetensors(payloads, b.metadata), 'rebuilt');
      expect(rebuilt.file.subarray(rebuilt.dataStart).equals(b.file.subarray(b.dataStart))).toBe(
        true,
      );
      expect(JSON.parse(rebuilt.headerBytes.toString())).toEqual(
        JSON.parse(b.headerBytes.toString()),
      );
      expect(rebuilt.dataStart).toBe(b.dataStart);
    }
  });

  it('the reference decodes our deltas to the exact new files (in place and as tensors)', async () => {
    for (const v of VARIANTS) {
      const [prev, next] = await Promise.all([file(v, 'prev'), file(v, 'next')]);
      await writeFile(join(work, v, 'ts_delta.safetensors'), encodeDeltaFile(prev, next).file);
    }
    const { stdout } = await run(PYTHON, [SCRIPT, 'apply', work], { maxBuffer: 16 << 20 });
    const result = JSON.parse(stdout.trim().split('\n').pop()!) as Record<
      string,
      { inplace_equal: boolean; dict_equal: boolean }
    >;
    for (const v of VARIANTS)
      expect(result[v], v).toEqual({ inplace_equal: true, dict_equal: true });
  });
});

// The parity fixtures are only as good as their provenance: regenerate them with the real
// PyTorch/transformers/PEFT reference (scripts/reference/torch_parity.py, in the venv that
// scripts/setup.sh installs) and check they match what is committed.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSafetensorsF64 } from '../../src/checkpoints/safetensors.js';
import { CONFIG_FILES, PARITY_CASES, PARITY_DIR, relativeError } from './parity-fixtures.js';

const run = promisify(execFile);
const PYTHON = join(
  process.env.TEMPER_PYREF_VENV ?? join(homedir(), '.cache', 'temper', 'pyref'),
  'bin',
  'python',
);
const SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'reference', 'torch_parity.py');

describe('PyTorch reference fixtures', () => {
  const out = mkdtempSync(join(tmpdir(), 'parity-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('regenerate to the committed values', async () => {
    expect(
      existsSync(PYTHON),
      `${PYTHON} missing: run scripts/setup.sh to install the Python reference environment`,
    ).toBe(true);
    await run(PYTHON, [SCRIPT], {
      env: { ...process.env, TEMPER_PARITY_OUT: out },
      maxBuffer: 16 << 20,
    });
    for (const name of PARITY_CASES) {
      for (const file of ['case.json', ...CONFIG_FILES, 'model.safetensors']) {
        expect(
          readFileSync(join(out, name, file)).equals(readFileSync(join(PARITY_DIR, name, file))),
          `${name}/${file}`,
        ).toBe(true);
      }
      const fresh = parseSafetensorsF64(readFileSync(join(out, name, 'expected.safetensors')));
      const committed = parseSafetensorsF64(
        readFileSync(join(PARITY_DIR, name, 'expected.safetensors')),
      );
      expect([...fresh.keys()].sort()).toEqual([...committed.keys()].sort());
      for (const [key, t] of committed)
        expect(relativeError(fresh.get(key)!.data, t.data), `${name} ${key}`).toBeLessThan(1e-12);
    }
  }, 120_000);
});

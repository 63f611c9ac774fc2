// `temper model score` as a user runs it: a real subprocess over a model directory.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TransformerModel } from '../../src/engine/model.js';
import { PARITY_DIR } from '../engine/parity-fixtures.js';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const temper = (...args: string[]) => run('npx', ['tsx', CLI, ...args], { encoding: 'utf8' });

describe('temper model score', () => {
  const dir = join(PARITY_DIR, 'llama_gqa_untied');

  it('prints per-target-token logprobs of a token list as JSON', async () => {
    const tokens = [5, 17, 3, 40, 22, 9];
    const { stdout } = await temper(
      'model',
      'score',
      '--model',
      dir,
      '--tokens',
      tokens.join(','),
      '-o',
      'json',
      '--threads',
      '1',
    );
    const result = JSON.parse(stdout);
    expect(result.tokens).toEqual(tokens);
    const model = await TransformerModel.fromDirectory(dir, { threads: 1 });
    const expected = Array.from(
      model.forward([{ tokens: tokens.slice(0, -1), targets: tokens.slice(1) }]),
    );
    expect(result.logprobs).toEqual(expected);
    expect(result.sum).toBeCloseTo(
      expected.reduce((a, b) => a + b, 0),
      10,
    );
  });

  it('explains bad input and exits non-zero', async () => {
    await expect(
      temper('model', 'score', '--model', dir, '--tokens', '1,x,3'),
    ).rejects.toMatchObject({
      stderr: expect.stringContaining("item 2 ('x') is not a non-negative integer token id"),
    });
    await expect(temper('model', 'score', '--model', dir)).rejects.toMatchObject({
      stderr: expect.stringContaining('give exactly one of --text or --tokens'),
    });
    await expect(
      temper('model', 'score', '--model', dir, '--tokens', '1,999'),
    ).rejects.toMatchObject({
      stderr: expect.stringContaining('outside the vocabulary'),
    });
    await expect(
      temper('model', 'score', '--model', '/nonexistent', '--tokens', '1,2'),
    ).rejects.toMatchObject({
      stderr: expect.stringContaining('/nonexistent is no directory, nor a model id'),
    });
  });
});

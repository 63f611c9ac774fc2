/** DPO pairs on the byte-level `simple` renderer, token by token, and as the DPO loss reads them. */
import { describe, expect, it } from 'vitest';
import { dpoPairs, flattenPairs, parseDataset } from '../../src/datasets/index.js';
import { dpoLoss, pairResponseStart, param } from '../../src/losses/index.js';
import { nextTokenDatum } from '../../src/sdk/datums.js';
import { toLossDatum } from '../../src/sdk/types.js';
import { createByteTokenizer, getRenderer } from '../../src/tokenizers/index.js';
import { assistant, jsonl, user } from './helpers.js';

const simple = getRenderer('simple', createByteTokenizer());
const EOS = 256;

function seq(...parts: [string | number, number][]): { tokens: number[]; weights: number[] } {
  const tokens: number[] = [];
  const weights: number[] = [];
  for (const [piece, w] of parts) {
    const ids = typeof piece === 'number' ? [piece] : [...new TextEncoder().encode(piece)];
    for (const id of ids) {
      tokens.push(id);
      weights.push(w);
    }
  }
  return { tokens, weights };
}

const row = {
  input: { messages: [user('Hi', { weight: 1 })] },
  preferred_output: [assistant('Hello', { weight: 0 })],
  non_preferred_output: [assistant('Go away')],
};
const rows = parseDataset('dpo', jsonl(row, '', row, row)).rows;

describe('dpoPairs', () => {
  it('renders both sides over the same prompt; only the response is weighted', () => {
    const [pair] = dpoPairs(rows, simple);
    const chosen = seq(['User: Hi\nAssistant:', 0], [' Hello', 1], [EOS, 1], ['\n', 0]);
    const rejected = seq(['User: Hi\nAssistant:', 0], [' Go away', 1], [EOS, 1], ['\n', 0]);
    expect(pair!.chosen).toEqual(nextTokenDatum(chosen.tokens, chosen.weights));
    expect(pair!.rejected).toEqual(nextTokenDatum(rejected.tokens, rejected.weights));
    expect(pair!.promptTokens).toBe('User: Hi\nAssistant:'.length);
    // " Hello" and " Go away" share their leading space.
    expect(pair!.responseStart).toBe('User: Hi\nAssistant: '.length);
    expect(pair!.truncatedTokens).toBe(0);
    expect(dpoPairs(rows, simple).map((p) => [p.rowIndex, p.line])).toEqual([
      [0, 1],
      [1, 3],
      [2, 4],
    ]);
  });

  it('gives the response start the DPO loss computes itself', () => {
    const [pair] = dpoPairs(rows, simple);
    const start = pairResponseStart(toLossDatum(pair!.chosen), toLossDatum(pair!.rejected), 0);
    expect(start).toBe(pair!.responseStart);
  });

  it('flattens to [chosen, rejected, ...], the layout dpoLoss takes', () => {
    const pairs = dpoPairs(rows, simple);
    const data = flattenPairs(pairs);
    expect(data).toHaveLength(6);
    expect(data[2]).toBe(pairs[1]!.chosen);
    // Reference -1 everywhere; the policy puts 0 on chosen tokens and -1 elsewhere, so the
    // margin counts the chosen tokens the loss scores: those from the response start on.
    const lossData = data.map((d) => {
      const ld = toLossDatum(d);
      const ref = d.targets.map(() => -1);
      return { ...ld, loss_fn_inputs: { ...ld.loss_fn_inputs, ref_logprobs: ref } };
    });
    const logprobs = data.map((d, i) => param(d.targets.map(() => (i % 2 === 0 ? 0 : -1))));
    const out = dpoLoss({ beta: 0.1 })(lossData, logprobs);
    const p = pairs[0]!;
    const scored = p.chosen.targets.length - (p.responseStart - 1);
    expect(scored).toBe(' Hello'.length - 1 + 2); // "Hello" after the shared space, EOS, "\n"
    expect(out.metrics['margin:mean']).toBe(scored);
  });

  it('cuts both sides at maxContextLength', () => {
    const [pair] = dpoPairs(rows, simple, { maxContextLength: 22 });
    expect(pair!.chosen.tokens.length + 1).toBe(22);
    expect(pair!.rejected.tokens.length + 1).toBe(22);
    const prompt = 'User: Hi\nAssistant:'.length;
    const full = (answer: string) => prompt + answer.length + 2; // + EOS + "\n"
    expect(pair!.truncatedTokens).toBe(full(' Hello') - 22 + (full(' Go away') - 22));
  });
});

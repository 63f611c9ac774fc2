/**
 * SFT rendering checked token by token: on the bundled byte-level model's own tokenizer and
 * renderer (catalog byte-lm-3m, `simple`), and on the real Qwen3 tokenizer for thinking
 * conversations.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  parseDataset,
  renderSamples,
  type SftRow,
  sftDatums,
  unrollSftMessages,
} from '../../src/datasets/index.js';
import { nextTokenDatum } from '../../src/sdk/datums.js';
import {
  getRenderer,
  loadBundledQwen3Tokenizer,
  type Renderer,
  type Tokenizer,
} from '../../src/tokenizers/index.js';
import { loadModelTokenizer, modelRendererName } from '../../src/tokenizers/model-files.js';
import { assistant, chat, jsonl, user } from './helpers.js';

const MODEL_DIR = new URL('../../catalog/accounts/temper/models/byte-lm-3m', import.meta.url)
  .pathname;

let byteTok: Tokenizer;
let simple: Renderer;
let qwen3: Renderer;

beforeAll(async () => {
  byteTok = await loadModelTokenizer(MODEL_DIR);
  simple = getRenderer(await modelRendererName(MODEL_DIR), byteTok);
  qwen3 = getRenderer('qwen3', await loadBundledQwen3Tokenizer());
});

const EOS = 256; // the byte tokenizer's <|endoftext|>

/** Expected byte-tokenizer sequence from [text or special id, weight] segments. */
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

const rowsOf = (...rows: unknown[]) => parseDataset('sft', jsonl(...rows), { minExamples: 1 }).rows;

/** [decoded token, weight] for every token of a sequence. */
function table(tok: Tokenizer, tokens: number[], weights: number[]): [string, number][] {
  return tokens.map((t, i) => [tok.decode([t]), weights[i]!]);
}

describe('sftDatums on the bundled byte-level model', () => {
  it('uses the model’s own renderer', () => {
    expect(simple.name).toBe('simple');
    expect(byteTok.name).toBe('byte');
  });

  it('trains the assistant reply and its end token, shifted for next-token prediction', () => {
    const [ex] = sftDatums(rowsOf(chat('hi', 'yo')), simple);
    const want = seq(['User: hi\nAssistant:', 0], [' yo', 1], [EOS, 1], ['\n', 0]);
    expect(ex!.datum).toEqual(nextTokenDatum(want.tokens, want.weights));
    expect(ex).toMatchObject({ rowIndex: 0, line: 1, splitIndex: 0, truncatedTokens: 0 });
  });

  it('honours per-message weights', () => {
    const [ex] = sftDatums(
      rowsOf({
        messages: [
          user('a', { weight: 1 }),
          assistant('b', { weight: 0 }),
          user('c'),
          assistant('d'),
        ],
      }),
      simple,
    );
    const want = seq(
      ['User:', 0],
      [' a\n', 1],
      ['Assistant:', 0],
      [' b', 0],
      [EOS, 0],
      ['\nUser: c\nAssistant:', 0],
      [' d', 1],
      [EOS, 1],
      ['\n', 0],
    );
    expect(ex!.datum).toEqual(nextTokenDatum(want.tokens, want.weights));
  });

  it('scales token weights by the root weight (any sign; untrained tokens stay +0)', () => {
    const rows = rowsOf(
      chat('q', 'a', { weight: 0.5 }),
      chat('q', 'a', { weight: -2 }),
      chat('q', 'a', { weight: 0 }),
    );
    const [half, negative, zero] = sftDatums(rows, simple).map((e) => e.datum.weights);
    const base = seq(['User: q\nAssistant:', 0], [' a', 1], [EOS, 1], ['\n', 0]).weights.slice(1);
    expect(half).toEqual(base.map((w) => w * 0.5));
    expect(negative).toEqual(base.map((w) => (w === 0 ? 0 : -2)));
    expect(zero!.every((w) => Object.is(w, 0))).toBe(true);
    expect(negative!.filter((w) => Object.is(w, -0))).toEqual([]);
  });

  it('renders tools as the renderer lays them out', () => {
    const tools = [{ type: 'function', function: { name: 'f' } }];
    const [ex] = sftDatums(rowsOf({ ...chat('q', 'a'), tools }), simple);
    const want = seq(
      ['Tools: {"type": "function", "function": {"name": "f"}}\nUser: q\nAssistant:', 0],
      [' a', 1],
      [EOS, 1],
      ['\n', 0],
    );
    expect(ex!.datum).toEqual(nextTokenDatum(want.tokens, want.weights));
  });

  it('cuts examples at maxContextLength, keeping the start', () => {
    const [ex] = sftDatums(rowsOf(chat('hi', 'yo')), simple, { maxContextLength: 21 });
    const want = seq(['User: hi\nAssistant:', 0], [' y', 1]);
    expect(want.tokens).toHaveLength(21);
    expect(ex!.datum).toEqual(nextTokenDatum(want.tokens, want.weights));
    expect(ex!.truncatedTokens).toBe(3);
  });

  it('keeps row order, row indices and line numbers (blank lines counted)', () => {
    const rows = parseDataset(
      'sft',
      jsonl(chat('a', 'b'), '', chat('c', 'd'), chat('e', 'f')),
    ).rows;
    expect(sftDatums(rows, simple).map((e) => [e.rowIndex, e.line])).toEqual([
      [0, 1],
      [1, 3],
      [2, 4],
    ]);
  });

  it('refuses rows with image parts (no renderer takes images yet)', () => {
    const image = { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBO' } };
    const rows = parseDataset('sft', jsonl({ messages: [user([image]), assistant('x')] }), {
      minExamples: 1,
      supportsImages: true,
    }).rows;
    expect(() => sftDatums(rows, simple)).toThrow(
      'Dataset validation failed: the example has image parts, which the simple renderer cannot render on line 1',
    );
  });
});

describe('multi-turn thinking conversations', () => {
  const thinking = {
    messages: [
      user('What is 1+1?'),
      assistant('2', { reasoning_content: 'A' }),
      user('2+2?'),
      assistant('4', { reasoning_content: 'B' }),
    ],
  };

  it('unroll to one example per assistant turn, earlier turns as plain context', () => {
    const unrolled = unrollSftMessages(rowsOf(thinking)[0]!.messages);
    expect(unrolled).toEqual([
      {
        messages: [user('What is 1+1?'), assistant('2', { reasoning_content: 'A' })],
        trainOnWhat: 'last_assistant_message',
      },
      {
        messages: [
          user('What is 1+1?'),
          assistant('2', { weight: 0 }),
          user('2+2?'),
          assistant('4', { reasoning_content: 'B' }),
        ],
        trainOnWhat: 'last_assistant_message',
      },
    ]);
  });

  it('render on qwen3 with each turn’s own thinking trained, token by token', () => {
    const examples = sftDatums(rowsOf(thinking), qwen3);
    expect(examples.map((e) => [e.rowIndex, e.splitIndex])).toEqual([
      [0, 0],
      [0, 1],
    ]);
    const full = (e: (typeof examples)[number]) => [e.datum.tokens[0]!, ...e.datum.targets];
    const weights = (e: (typeof examples)[number]) => [0, ...e.datum.weights];
    const tok = qwen3.tokenizer;
    const q1: [string, number][] = [
      ['<|im_start|>', 0],
      ['user', 0],
      ['\n', 0],
      ['What', 0],
      [' is', 0],
      [' ', 0],
      ['1', 0],
      ['+', 0],
      ['1', 0],
      ['?', 0],
      ['<|im_end|>', 0],
      ['\n', 0],
      ['<|im_start|>', 0],
      ['assistant', 0],
      ['\n', 0],
    ];
    expect(table(tok, full(examples[0]!), weights(examples[0]!))).toEqual([
      ...q1,
      ['<think>', 1],
      ['\n', 1],
      ['A', 1],
      ['\n', 1],
      ['</think>', 1],
      ['\n\n', 1],
      ['2', 1],
      ['<|im_end|>', 1],
      ['\n', 0],
    ]);
    expect(table(tok, full(examples[1]!), weights(examples[1]!))).toEqual([
      ...q1,
      ['2', 0],
      ['<|im_end|>', 0],
      ['\n', 0],
      ['<|im_start|>', 0],
      ['user', 0],
      ['\n', 0],
      ['2', 0],
      ['+', 0],
      ['2', 0],
      ['?', 0],
      ['<|im_end|>', 0],
      ['\n', 0],
      ['<|im_start|>', 0],
      ['assistant', 0],
      ['\n', 0],
      ['<think>', 1],
      ['\n', 1],
      ['B', 1],
      ['\n', 1],
      ['</think>', 1],
      ['\n\n', 1],
      ['4', 1],
      ['<|im_end|>', 1],
      ['\n', 0],
    ]);
  });

  it('do not unroll when only the last turn thinks', () => {
    const lastOnly = {
      messages: [user('a'), assistant('b'), user('c'), assistant('d', { reasoning_content: 'r' })],
    };
    const examples = sftDatums(rowsOf(lastOnly), qwen3);
    expect(examples).toHaveLength(1);
    expect(examples[0]!.datum.weights.filter((w) => w > 0).length).toBeGreaterThan(2);
  });
});

describe('renderSamples', () => {
  it('returns up to 20 records in the documented layout', () => {
    const rows = rowsOf(...Array.from({ length: 25 }, (_, i) => chat(`q${i}`, `a${i}`)));
    const samples = renderSamples(rows, simple);
    expect(samples).toHaveLength(20);
    const s = samples[3]!;
    expect(Object.keys(s)).toEqual([
      'source_jsonl_row_index',
      'source_jsonl_line_number',
      'split_index',
      'renderer',
      'train_on_what',
      'token_ids',
      'decoded_tokens',
      'token_weights',
      'training_target_token_ids',
      'training_loss_weights',
    ]);
    const want = seq(['User: q3\nAssistant:', 0], [' a3', 1], [EOS, 1], ['\n', 0]);
    expect(s).toEqual({
      source_jsonl_row_index: 3,
      source_jsonl_line_number: 4,
      split_index: 0,
      renderer: 'simple',
      train_on_what: 'all_assistant_messages',
      token_ids: want.tokens,
      decoded_tokens: [...'User: q3\nAssistant: a3', '<|endoftext|>', '\n'],
      token_weights: want.weights,
      training_target_token_ids: want.tokens.slice(1),
      training_loss_weights: want.weights.slice(1),
    });
    expect(renderSamples(rows, simple, { limit: 2 })).toHaveLength(2);
  });

  it('numbers the records of an unrolled row and shows scaled weights', () => {
    const rows: SftRow[] = rowsOf(
      {
        messages: [
          user('a'),
          assistant('b', { reasoning_content: 'x' }),
          user('c'),
          assistant('d'),
        ],
        weight: 2,
      },
      chat('e', 'f', { weight: 0.5 }),
    );
    const samples = renderSamples(rows, simple);
    expect(samples.map((s) => [s.source_jsonl_row_index, s.split_index, s.train_on_what])).toEqual([
      [0, 0, 'last_assistant_message'],
      [0, 1, 'last_assistant_message'],
      [1, 0, 'all_assistant_messages'],
    ]);
    expect(new Set(samples[0]!.token_weights)).toEqual(new Set([0, 2]));
    expect(new Set(samples[2]!.training_loss_weights)).toEqual(new Set([0, 0.5]));
  });
});

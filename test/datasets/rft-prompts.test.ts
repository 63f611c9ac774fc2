/** RFT generation prompts on the byte-level `simple` renderer and on qwen3. */
import { beforeAll, describe, expect, it } from 'vitest';
import { parseDataset, rftPrompts } from '../../src/datasets/index.js';
import {
  createByteTokenizer,
  getRenderer,
  loadBundledQwen3Tokenizer,
  type Renderer,
} from '../../src/tokenizers/index.js';
import { jsonl, system, user, validationError } from './helpers.js';

const simple = getRenderer('simple', createByteTokenizer());
let qwen3: Renderer;
beforeAll(async () => {
  qwen3 = getRenderer('qwen3', await loadBundledQwen3Tokenizer());
});

const rows = parseDataset(
  'rft',
  jsonl(
    { messages: [user('What is 15 * 23?')], ground_truth: '345', id: 'gsm-1', level: 'easy' },
    '',
    { messages: [system('Be terse.'), user('2+2?')], ground_truth: { answer: 4 } },
  ),
).rows;

describe('rftPrompts', () => {
  it('renders the conversation plus the assistant header, byte by byte', () => {
    const [first, second] = rftPrompts(rows, simple);
    expect(first!.promptTokens).toEqual([
      ...new TextEncoder().encode('User: What is 15 * 23?\nAssistant:'),
    ]);
    expect(simple.tokenizer.decode(second!.promptTokens)).toBe(
      'System: Be terse.\nUser: 2+2?\nAssistant:',
    );
  });

  it('carries what the evaluator needs', () => {
    const [first, second] = rftPrompts(rows, simple);
    expect(first).toMatchObject({
      rowIndex: 0,
      line: 1,
      rowId: 'gsm-1',
      groundTruth: '345',
      weight: 1,
      extra: { id: 'gsm-1', level: 'easy' },
      messages: [user('What is 15 * 23?')],
    });
    expect(second).toMatchObject({
      rowIndex: 1,
      line: 3,
      rowId: 'row-1',
      groundTruth: { answer: 4 },
    });
  });

  it('passes example weights and tools through', () => {
    const tools = [{ type: 'function', function: { name: 'calc' } }];
    const weighted = parseDataset('rft', jsonl({ messages: [user('x')], tools, weight: 2 })).rows;
    const [p] = rftPrompts(weighted, simple);
    expect(p!.weight).toBe(2);
    expect(simple.tokenizer.decode(p!.promptTokens)).toBe(
      'Tools: {"type": "function", "function": {"name": "calc"}}\nUser: x\nAssistant:',
    );
  });

  it('follows qwen3 enable_thinking', () => {
    const think = rftPrompts(rows, qwen3)[0]!;
    const direct = rftPrompts(rows, qwen3, { enableThinking: false })[0]!;
    const tok = qwen3.tokenizer;
    expect(tok.decode(think.promptTokens)).toBe(
      '<|im_start|>user\nWhat is 15 * 23?<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(tok.decode(direct.promptTokens)).toBe(
      `${tok.decode(think.promptTokens)}<think>\n\n</think>\n\n`,
    );
  });

  it('refuses a prompt longer than maxPromptTokens instead of cutting it', () => {
    const err = validationError(() => rftPrompts(rows, simple, { maxPromptTokens: 34 }));
    expect(err.code).toBe('prompt_too_long');
    expect(err.message).toBe(
      'Dataset validation failed: the prompt renders to 39 tokens, more than the 34 allowed on line 3',
    );
  });
});

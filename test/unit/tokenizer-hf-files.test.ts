// The bundled model's HF tokenizer directory (tokenizer.json + tokenizer_config.json with the
// chat template) against temper's own byte tokenizer and `simple` renderer: the committed files
// are what src/tokenizers/byte-hf-files.ts writes, temper's HF loader reads them as the byte
// tokenizer, and the real transformers (the reference venv, offline) renders a set of
// conversations token for token as temper does — with `apply_chat_template(tokenize=True,
// add_generation_prompt=True)`, the call the Fireworks DeploymentSampler makes.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundledModelDir } from '../../src/catalog/bundled.js';
import { byteTokenizerFiles } from '../../src/tokenizers/byte-hf-files.js';
import { loadHfTokenizer } from '../../src/tokenizers/hf.js';
import { createByteTokenizer, getRenderer, type MessageInput } from '../../src/tokenizers/index.js';
import type { ToolSpec } from '../../src/tokenizers/messages.js';
import { loadModelTokenizer, modelRendererName } from '../../src/tokenizers/model-files.js';
import { hfChatRender, WEATHER_TOOL } from '../support/hf-chat-render.js';

const DIR = bundledModelDir();

interface Conversation {
  messages: MessageInput[];
  tools?: ToolSpec[];
  add_generation_prompt: boolean;
}

const CONVERSATIONS: Conversation[] = [
  {
    messages: [{ role: 'user', content: 'What is the capital of France?' }],
    add_generation_prompt: true,
  },
  {
    messages: [
      { role: 'user', content: 'What is the capital of France?' },
      { role: 'assistant', content: 'The capital of France is Paris.' },
    ],
    add_generation_prompt: false,
  },
  {
    messages: [
      { role: 'system', content: 'You answer briefly.' },
      { role: 'user', content: 'Say hi' },
      { role: 'assistant', content: 'Hi!' },
      { role: 'user', content: 'Again,\nin two lines' },
    ],
    add_generation_prompt: true,
  },
  {
    messages: [
      { role: 'user', content: 'Ünïcödé: café, 日本語, emoji 🙂, tab\tand "quotes" \\ backslash' },
      { role: 'assistant', content: 'Voilà — ça marche 👍' },
    ],
    add_generation_prompt: false,
  },
  {
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Parts ' },
          { type: 'text', text: 'joined' },
        ],
      },
      { role: 'assistant', content: '' },
    ],
    add_generation_prompt: true,
  },
  {
    tools: [WEATHER_TOOL],
    messages: [
      { role: 'system', content: 'Use tools.' },
      { role: 'user', content: 'Weather in Paris for 3 days?' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'get_weather', arguments: { city: 'Paris', days: 3 } },
          },
        ],
      },
      { role: 'tool', content: '{"temp": 21, "sky": "clear"}', tool_call_id: 'call_1' },
      { role: 'assistant', content: 'Sunny, 21 degrees.' },
    ],
    add_generation_prompt: false,
  },
  {
    tools: [WEATHER_TOOL],
    messages: [
      { role: 'user', content: 'Two calls please' },
      {
        role: 'assistant',
        content: 'Calling:',
        tool_calls: [
          { type: 'function', function: { name: 'get_weather', arguments: '{"city": "Oslo"}' } },
          {
            type: 'function',
            function: { name: 'get_weather', arguments: { city: 'Rome "Eternal"' } },
          },
        ],
      },
    ],
    add_generation_prompt: true,
  },
];

const TEXTS = [
  '',
  'plain ascii',
  'héllo wörld 🙂',
  'line\nbreak\r\nand\ttab',
  '\u0000\u0001 control',
];

describe('the bundled model as an HF tokenizer directory', () => {
  it('holds exactly the files byte-hf-files.ts writes, and temper still reads it as the byte tokenizer', async () => {
    const config = JSON.parse(await readFile(join(DIR, 'config.json'), 'utf8')) as {
      max_position_embeddings: number;
    };
    for (const [name, text] of Object.entries(byteTokenizerFiles(config.max_position_embeddings)))
      expect(
        await readFile(join(DIR, name), 'utf8'),
        `${name}: run scripts/write-tokenizer-files.ts`,
      ).toBe(text);
    expect((await loadModelTokenizer(DIR)).name).toBe('byte');
    expect(await modelRendererName(DIR)).toBe('simple');
  });

  it("temper's HF tokenizer.json loader encodes and decodes it exactly as the byte tokenizer", async () => {
    const hf = await loadHfTokenizer(DIR);
    const bytes = createByteTokenizer();
    expect(hf.eosId).toBe(bytes.eosId);
    for (const t of [...TEXTS, '<|endoftext|> stays text']) {
      expect(hf.encode(t)).toEqual(bytes.encode(t));
      expect(hf.decode(bytes.encode(t))).toBe(t);
    }
    expect(hf.encode('a<|im_end|>b', { allowSpecial: true })).toEqual(
      bytes.encode('a<|im_end|>b', { allowSpecial: true }),
    );
  });

  it('transformers (offline) renders every conversation token for token as the simple renderer', async () => {
    const out = await hfChatRender<RenderOut>({
      dir: DIR,
      conversations: CONVERSATIONS,
      texts: TEXTS,
    });
    const renderer = getRenderer('simple', createByteTokenizer());
    expect(out.class).toBe('TokenizersBackend');
    expect(out.eos_token_id).toBe(256);
    CONVERSATIONS.forEach((c, i) => {
      const options = c.tools ? { tools: c.tools } : undefined;
      const ours = c.add_generation_prompt
        ? renderer.renderGenerationPrompt(c.messages, options)
        : renderer.render(c.messages, options).tokens;
      expect(out.rendered[i], `conversation ${i}: ${JSON.stringify(out.templated[i])}`).toEqual(
        ours,
      );
    });
    const bytes = createByteTokenizer();
    TEXTS.forEach((t, i) => {
      expect(out.encoded[i]).toEqual(bytes.encode(t));
      expect(out.decoded[i]).toBe(t);
    });
  }, 60_000);
});

interface RenderOut {
  rendered: number[][];
  templated: string[];
  encoded: number[][];
  decoded: string[];
  eos_token_id: number;
  class: string;
}

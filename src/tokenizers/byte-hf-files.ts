/**
 * The byte tokenizer and the `simple` renderer written as a HuggingFace tokenizer directory
 * (`tokenizer.json` + `tokenizer_config.json` with a chat template), so that Python users load
 * a model's tokenizer with `transformers.AutoTokenizer.from_pretrained(model_dir)`, offline,
 * and `apply_chat_template` renders conversations token for token as temper's renderer does
 * (test/unit/tokenizer-hf-files.test.ts checks both against the real transformers).
 *
 * `tokenizer.json` is a BPE model with no merges over GPT-2's byte-level alphabet: every byte
 * is one token whose id is the byte, and the special tokens are added tokens with their byte
 * tokenizer ids. `temper_tokenizer: "byte"` in tokenizer_config.json tells temper to use its
 * own (faster, identical) byte tokenizer for the directory.
 *
 * One difference is inherent to text chat templates: message text that spells a special token
 * (`<|endoftext|>`) becomes that token in transformers, while temper's renderer encodes
 * message content as plain bytes so that content can never forge a control token.
 */
import { BYTE_SPECIAL_TOKENS } from './byte.js';

export const TEMPER_TOKENIZER_FIELD = 'temper_tokenizer';

/** GPT-2's printable character for each byte (the ByteLevel pre-tokenizer's alphabet). */
function byteLevelAlphabet(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const chars = new Array<string>(256);
  let shifted = 0;
  for (let b = 0; b < 256; b++)
    chars[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + shifted++);
  return chars;
}

/**
 * The `simple` renderer (renderers/simple.ts) as a Jinja chat template, statement for
 * statement: `Tools:` lines, `{Role}: {content}\n` turns, assistant turns ending with the EOS
 * token and a newline, `Assistant:` as the generation prompt.
 */
export const SIMPLE_CHAT_TEMPLATE = [
  "{%- set labels = {'system': 'System', 'user': 'User', 'assistant': 'Assistant', 'tool': 'Tool'} -%}",
  '{%- for tool in tools or [] -%}',
  "{{- 'Tools: ' + (tool | tojson) + '\\n' -}}",
  '{%- endfor -%}',
  '{%- for message in messages -%}',
  "{%- if message['content'] is string -%}{%- set content = message['content'] -%}",
  "{%- elif message['content'] is none or message['content'] is undefined -%}{%- set content = '' -%}",
  "{%- else -%}{%- set content = message['content'] | map(attribute='text') | join('') -%}",
  '{%- endif -%}',
  "{%- if message['role'] == 'assistant' -%}",
  "{{- 'Assistant: ' + content -}}",
  "{%- for call in message['tool_calls'] or [] -%}",
  "{%- set fn = call['function'] if call['function'] is defined else call -%}",
  "{%- if not loop.first or content | length > 0 -%}{{- '\\n' -}}{%- endif -%}",
  "{{- '<tool_call>\\n{\"name\": \"' + fn['name'] + '\", \"arguments\": ' + (fn['arguments'] if fn['arguments'] is string else fn['arguments'] | tojson) + '}\\n</tool_call>' -}}",
  '{%- endfor -%}',
  "{{- eos_token + '\\n' -}}",
  '{%- else -%}',
  "{{- labels[message['role']] + ': ' + content + '\\n' -}}",
  '{%- endif -%}',
  '{%- endfor -%}',
  "{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}",
].join('');

/** tokenizer.json of the byte tokenizer (tokenizers' JSON format, version 1.0). */
export function byteTokenizerJson(): Record<string, unknown> {
  const alphabet = byteLevelAlphabet();
  const byteLevel = {
    type: 'ByteLevel',
    add_prefix_space: false,
    trim_offsets: false,
    use_regex: false,
  };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: Object.entries(BYTE_SPECIAL_TOKENS).map(([content, id]) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(alphabet.map((c, b) => [c, b])),
      merges: [],
    },
  };
}

/** tokenizer_config.json: transformers' fields, the chat template, and temper's markers. */
export function byteTokenizerConfig(maxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    [TEMPER_TOKENIZER_FIELD]: 'byte',
    chat_renderer: 'simple',
    eos_token: '<|endoftext|>',
    pad_token: '<|pad|>',
    model_max_length: maxLength,
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: Object.fromEntries(
      Object.entries(BYTE_SPECIAL_TOKENS).map(([content, id]) => [
        String(id),
        {
          content,
          lstrip: false,
          normalized: false,
          rstrip: false,
          single_word: false,
          special: true,
        },
      ]),
    ),
    chat_template: SIMPLE_CHAT_TEMPLATE,
  };
}

/** The two files, as written into a model directory. */
export function byteTokenizerFiles(maxLength: number): Record<string, string> {
  return {
    'tokenizer.json': `${JSON.stringify(byteTokenizerJson(), null, 2)}\n`,
    'tokenizer_config.json': `${JSON.stringify(byteTokenizerConfig(maxLength), null, 2)}\n`,
  };
}

/**
 * Message and tool rules shared by every dataset kind, each checked through an SFT file whose
 * bad example sits on line 3 (after a valid line and a blank line), with the exact message.
 */
import { describe, expect, it } from 'vitest';
import { parseDataset, type ValidateOptions } from '../../src/datasets/index.js';
import { assistant, chat, jsonl, system, user, validationError } from './helpers.js';

const PNG = 'data:image/png;base64,iVBORw0KGgo=';

/** Validates `[valid, blank, bad]` and returns the error for line 3. */
function failOnLine3(bad: unknown, opts: ValidateOptions = {}) {
  const text = jsonl(chat(), '', bad);
  return validationError(() => parseDataset('sft', text, { minExamples: 1, ...opts }));
}

const ok = (row: unknown, opts: ValidateOptions = {}) =>
  parseDataset('sft', jsonl(row), { minExamples: 1, ...opts }).rows[0]!;

describe('message rules', () => {
  const cases: [string, unknown, string, string][] = [
    [
      'messages missing',
      { conversation: [] },
      'missing_field',
      "Missing required field 'messages'",
    ],
    [
      'messages not a list',
      { messages: 'hi' },
      'invalid_field',
      'messages must be a list of messages (got "hi")',
    ],
    ['messages empty', { messages: [] }, 'invalid_field', 'messages must not be empty'],
    [
      'message not an object',
      { messages: ['hi', assistant('x')] },
      'invalid_field',
      'messages[0] must be an object (got "hi")',
    ],
    [
      'role missing',
      { messages: [{ content: 'hi' }, assistant('x')] },
      'missing_field',
      "Missing required field 'messages[0].role'",
    ],
    [
      'bad role',
      { messages: [{ role: 'bot', content: 'hi' }, assistant('x')] },
      'invalid_role',
      'messages[0].role must be one of system, user, assistant, tool (got "bot")',
    ],
    [
      'system not first',
      { messages: [user('a'), system('be nice'), assistant('x')] },
      'system_not_first',
      'messages[1] is a system message; a system message is optional and may only be the first message',
    ],
    [
      'user content missing',
      { messages: [{ role: 'user' }, assistant('x')] },
      'missing_field',
      "Missing required field 'messages[0].content'",
    ],
    [
      'content a number',
      { messages: [user(5), assistant('x')] },
      'invalid_content',
      'messages[0].content must be a string or a list of {"type": "text", "text": "..."} parts (got 5)',
    ],
    [
      'content null on a user message',
      { messages: [user(null), assistant('x')] },
      'invalid_content',
      'messages[0].content must be a string or a list of {"type": "text", "text": "..."} parts (got null)',
    ],
    [
      'unknown part type',
      { messages: [user([{ type: 'audio', data: 'x' }]), assistant('x')] },
      'invalid_content',
      'messages[0].content[0] must be a {"type": "text", "text": "..."} part (got type "audio")',
    ],
    [
      'text part without text',
      { messages: [user([{ type: 'text' }]), assistant('x')] },
      'missing_field',
      "Missing required field 'messages[0].content[0].text'",
    ],
    [
      'message weight 0.5',
      { messages: [user('a'), assistant('x', { weight: 0.5 })] },
      'invalid_message_weight',
      'messages[1].weight must be 0 (not trained) or 1 (trained) (got 0.5)',
    ],
    [
      'message weight "1"',
      { messages: [user('a', { weight: '1' }), assistant('x')] },
      'invalid_message_weight',
      'messages[0].weight must be 0 (not trained) or 1 (trained) (got "1")',
    ],
    [
      'reasoning_content on a user message',
      { messages: [user('a', { reasoning_content: 'hmm' }), assistant('x')] },
      'invalid_field',
      'messages[0].reasoning_content is only allowed on assistant messages',
    ],
    [
      'reasoning_content not a string',
      { messages: [user('a'), assistant('x', { reasoning_content: 3 })] },
      'invalid_field',
      'messages[1].reasoning_content: expected string, received number (got 3)',
    ],
    [
      'assistant with neither content nor tool calls',
      { messages: [user('a'), { role: 'assistant' }] },
      'missing_field',
      "Missing required field 'messages[1].content' (an assistant message needs content or tool_calls)",
    ],
    [
      'tool call without a name',
      {
        messages: [
          user('a'),
          { role: 'assistant', tool_calls: [{ type: 'function', function: { arguments: '{}' } }] },
        ],
      },
      'missing_field',
      "Missing required field 'messages[1].tool_calls[0].function.name'",
    ],
    [
      'tool call arguments not JSON',
      {
        messages: [
          user('a'),
          {
            role: 'assistant',
            tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{x' } }],
          },
        ],
      },
      'invalid_field',
      `messages[1].tool_calls[0].function.arguments is not valid JSON (${jsonError('{x')})`,
    ],
    [
      'tools not a list',
      { ...chat(), tools: { type: 'function' } },
      'invalid_field',
      'tools must be a list of tools (got an object)',
    ],
    [
      'tool without a function name',
      { ...chat(), tools: [{ type: 'function', function: { description: 'd' } }] },
      'missing_field',
      "Missing required field 'tools[0].function.name'",
    ],
    [
      'tool of another type',
      { ...chat(), tools: [{ type: 'retrieval', function: { name: 'f' } }] },
      'invalid_field',
      'tools[0].type: expected "function" (got "retrieval")',
    ],
  ];

  it.each(cases)('%s', (_name, bad, code, detail) => {
    const err = failOnLine3(bad);
    expect(err.code).toBe(code);
    expect(err.line).toBe(3);
    expect(err.detail).toBe(detail);
    expect(err.message).toBe(`Dataset validation failed: ${detail} on line 3`);
  });

  it('accepts content parts, tools, tool calls, tool results, reasoning and weights', () => {
    const row = ok({
      tools: [
        {
          type: 'function',
          function: { name: 'get_car_specs', parameters: { trimid: { type: 'int' } } },
        },
      ],
      messages: [
        system([{ type: 'text', text: 'You help.' }]),
        user([
          { type: 'text', text: 'Specs ' },
          { type: 'text', text: 'of trim 121?' },
        ]),
        {
          role: 'assistant',
          content: null,
          reasoning_content: 'Look it up.',
          tool_calls: [
            {
              id: 'c1',
              type: 'function',
              function: { name: 'get_car_specs', arguments: '{"trimid": 121}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: '{"hp": 300}' },
        assistant('300 hp.', { weight: 1 }),
        user('thanks', { weight: 0 }),
        assistant('Bye.', { weight: 0 }),
      ],
    });
    expect(row.messages).toHaveLength(7);
    expect(row.tools).toHaveLength(1);
  });

  it('tolerates unknown extra keys on messages and rows', () => {
    const row = ok({ ...chat(), id: 'x', messages: [user('a', { name: 'bob' }), assistant('b')] });
    expect(row.messages[0]).toEqual({ role: 'user', content: 'a', name: 'bob' });
  });
});

describe('image parts', () => {
  const image = (url: string) => ({ type: 'image_url', image_url: { url } });

  it('are refused for a text-only base model (the default)', () => {
    const err = failOnLine3({
      messages: [user([{ type: 'text', text: 'What is this?' }, image(PNG)]), assistant('A cat.')],
    });
    expect(err.code).toBe('image_not_supported');
    expect(err.message).toBe(
      'Dataset validation failed: messages[0].content[1] is an image part, but the base model is text-only; use a vision base model or remove the image on line 3',
    );
  });

  it('are accepted as base64 PNG/JPEG data URIs in user messages for a vision model', () => {
    const row = ok(
      {
        messages: [user([image(PNG), image('data:image/jpeg;base64,/9j/4AAQ')]), assistant('Two.')],
      },
      { supportsImages: true },
    );
    expect(row.imageParts).toBe(2);
  });

  it('must be data URIs, not HTTP URLs', () => {
    const err = failOnLine3(
      { messages: [user([image('https://example.com/cat.jpg')]), assistant('A cat.')] },
      { supportsImages: true },
    );
    expect(err.code).toBe('invalid_image');
    expect(err.detail).toBe(
      'messages[0].content[0].image_url.url must be a base64 data URI (data:image/png;base64,... or data:image/jpeg;base64,...); HTTP(S) URLs and other formats are not supported',
    );
  });

  it('must be in user messages', () => {
    const err = failOnLine3(
      { messages: [user('Draw'), assistant([image(PNG)])] },
      { supportsImages: true },
    );
    expect(err.code).toBe('invalid_image');
    expect(err.detail).toBe('messages[1].content[0]: images are only allowed in user messages');
  });

  it('need an image_url.url', () => {
    const err = failOnLine3(
      { messages: [user([{ type: 'image_url' }]), assistant('x')] },
      { supportsImages: true },
    );
    expect(err.code).toBe('missing_field');
    expect(err.detail).toBe("Missing required field 'messages[0].content[0].image_url'");
  });
});

function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (err) {
    return (err as Error).message;
  }
  return '';
}

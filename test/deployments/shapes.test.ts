// Token spelling and OpenAI's legacy logprobs fields (text_offset in characters, partial UTF-8
// as bytes:\xNN), and the stop-string hold-back of streams.
import { describe, expect, it } from 'vitest';
import { heldBack } from '../../src/deployments/gateway/inference.js';
import {
  legacyLogprobs,
  parseToolCalls,
  TokenSpelling,
} from '../../src/deployments/gateway/shapes.js';
import { createByteTokenizer, getRenderer } from '../../src/tokenizers/index.js';

const tok = createByteTokenizer();
const sp = new TokenSpelling(tok);
const ids = (s: string) => Array.from(Buffer.from(s));

describe('token spelling', () => {
  it('spells whole characters as text, partial UTF-8 as bytes:, specials by their text', () => {
    expect(sp.text(ids('a')[0] as number)).toBe('a');
    const [c3, a9] = ids('é') as [number, number];
    expect(sp.text(c3)).toBe('bytes:\\xc3');
    expect(sp.text(a9)).toBe('bytes:\\xa9');
    expect(sp.bytes(c3)).toEqual([0xc3]);
    expect(sp.text(tok.eosId)).toBe('<|endoftext|>');
  });

  it('text_offset counts characters (code points) of the text the tokens spell', () => {
    const t = ids('aé😀b');
    const lp = legacyLogprobs(
      sp,
      t,
      t.map(() => -1),
      t.map(() => null),
    );
    // a: 0; é (2 bytes) at 1; 😀 (4 bytes) at 2; b at 3, as Python indexes 'aé😀b'
    expect(lp.text_offset).toEqual([0, 1, 1, 2, 2, 2, 2, 3]);
    expect(lp.tokens[0]).toBe('a');
    expect(lp.token_ids).toEqual(t);
    // the same offsets continue from a start (streaming)
    expect(sp.offsets(ids('b'), 5)).toEqual([5]);
  });

  it('top_logprobs dicts keep the likelier of two alternatives spelled alike', () => {
    const d = sp.topDict([
      { token: 0x80, logprob: -1 },
      { token: 97, logprob: -2 },
    ]);
    expect(d).toEqual({ 'bytes:\\x80': -1, a: -2 });
  });
});

describe('stop strings while streaming', () => {
  it('holds back the longest suffix that could begin a stop string', () => {
    expect(heldBack('hello wor', ['world'])).toBe(3);
    expect(heldBack('hello', ['xyz'])).toBe(0);
    expect(heldBack('ab', ['b!', 'ab?'])).toBe(2);
  });
});

describe('tool calls in a sampled turn', () => {
  const renderer = getRenderer('simple', tok);

  it('come out in OpenAI shape: arguments as a JSON string, content around them', () => {
    const text =
      ' Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
    const out = parseToolCalls(renderer, [...tok.encode(text), tok.eosId]);
    expect(out?.content).toBe('Let me look.');
    expect(out?.toolCalls).toHaveLength(1);
    const call = out?.toolCalls[0];
    expect(call?.type).toBe('function');
    expect(call?.id).toMatch(/^call_[0-9a-f]{24}$/);
    expect(call?.function.name).toBe('get_weather');
    expect(JSON.parse(call?.function.arguments as string)).toEqual({ city: 'Paris' });
  });

  it('a turn without a (valid) call is no tool call', () => {
    expect(parseToolCalls(renderer, [...tok.encode(' Hello.'), tok.eosId])).toBeNull();
    const broken = ' <tool_call>\n{"name": \n</tool_call>';
    expect(parseToolCalls(renderer, [...tok.encode(broken), tok.eosId])).toBeNull();
  });
});

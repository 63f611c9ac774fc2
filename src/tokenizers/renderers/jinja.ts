/**
 * A model's own chat template (the Jinja `chat_template` of its tokenizer_config.json, or its
 * chat_template.jinja) rendered with `@huggingface/jinja`, so that any HF model renders its
 * conversations as transformers' `apply_chat_template` does: the template gets the messages
 * as the caller gave them (less temper's `weight` key), `tools`, `add_generation_prompt`, the
 * special-token strings (`bos_token`, `eos_token`, ...) and any extra template arguments; the
 * rendered text is tokenized with special tokens recognised and none added (what
 * `apply_chat_template(tokenize=True)` does).
 *
 * Loss weights, generically and exactly. The template is a black box, so the text of each
 * trained message is found by rendering prefixes of the conversation:
 *
 *   start of assistant message i = length of render(messages[:i], add_generation_prompt=true)
 *     — the generation prompt is exactly what sampling puts before the model's first token, so
 *     everything from there on is what the model would have to produce. That text must be a
 *     prefix of the whole rendering, or the conversation is refused (a template whose earlier
 *     text depends on later messages cannot be split into "prompt" and "answer").
 *   end of message i = length of render(messages[:i+1]) when that is a prefix of the whole
 *     rendering; otherwise (templates that render a message differently once it is no longer
 *     the last one, e.g. Qwen3 drops `<think>` from earlier turns) the end of the first stop
 *     token text (`eos_token`, generation_config's eos ids) after the start.
 *   The span is then cut after the last stop token text in it, so the end-of-turn token is
 *     trained and the separator the template writes after it (`\n`) is not — the same
 *     convention as the built-in renderers.
 *
 * Non-assistant messages with `weight: 1` get the same span with add_generation_prompt=false
 * (their header included, which a template gives no generic way to tell apart). The character
 * spans become token weights through each token's bytes: a token takes the weight of its first
 * byte (tokens never straddle a special token, so the boundaries are exact in practice).
 */

import { Template } from '@huggingface/jinja';
import { TokenizerError } from '../errors.js';
import type { MessageInput } from '../messages.js';
import type { Tokenizer } from '../types.js';
import {
  assistantMessage,
  cutAtStop,
  extractToolCalls,
  messageWeight,
  validateInput,
} from './common.js';
import type {
  GenerationPromptOptions,
  ParsedResponse,
  RenderedConversation,
  Renderer,
  RenderOptions,
} from './types.js';

export interface JinjaRendererOptions {
  /** The template source. */
  template: string;
  /** Special-token strings the template may use (`bos_token`, `eos_token`, `pad_token`, ...). */
  specialTokens?: Readonly<Record<string, string>>;
  /** Token ids that end an assistant turn (default: the tokenizer's eos). */
  stopTokens?: readonly number[];
  /** Name to report (default `jinja`). */
  name?: string;
}

const utf8 = new TextEncoder();

export class JinjaRenderer implements Renderer {
  readonly name: string;
  readonly tokenizer: Tokenizer;
  readonly stopTokens: readonly number[];
  private readonly template: Template;
  private readonly specialTokens: Readonly<Record<string, string>>;
  private readonly stopTexts: string[];
  private readonly hermesToolCalls: boolean;
  private readonly thinkBlocks: boolean;

  constructor(tokenizer: Tokenizer, options: JinjaRendererOptions) {
    this.name = options.name ?? 'jinja';
    this.tokenizer = tokenizer;
    try {
      this.template = new Template(options.template);
    } catch (err) {
      throw new TokenizerError(
        'invalid_chat_template',
        `chat template does not parse: ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.specialTokens = options.specialTokens ?? {};
    const stops = [...new Set(options.stopTokens ?? [tokenizer.eosId])];
    this.stopTokens = stops;
    this.stopTexts = stops.map((id) => tokenizer.decode([id], { skipSpecial: false }));
    this.hermesToolCalls = options.template.includes('<tool_call>');
    this.thinkBlocks = options.template.includes('</think>');
  }

  /** The template's text for `messages` (exactly what apply_chat_template(tokenize=False) gives). */
  renderText(
    messages: readonly MessageInput[],
    options: RenderOptions & {
      addGenerationPrompt?: boolean;
      extra?: Record<string, unknown>;
    } = {},
  ): string {
    const { tools } = validateInput(messages, options, false);
    const context: Record<string, unknown> = {
      ...this.specialTokens,
      ...options.extra,
      messages: messages.map(templateMessage),
      tools: tools.length > 0 ? tools : null,
      add_generation_prompt: options.addGenerationPrompt ?? false,
    };
    try {
      return this.template.render(context);
    } catch (err) {
      throw new TokenizerError(
        'invalid_chat_template',
        `the model's chat template refused the conversation: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  render(messages: readonly MessageInput[], options?: RenderOptions): RenderedConversation {
    const { messages: valid } = validateInput(messages, options, true);
    const whole = this.renderText(messages, options);
    const spans: [number, number][] = [];
    valid.forEach((m, i) => {
      if (messageWeight(m) !== 1) return;
      const before = this.renderText(messages.slice(0, i), {
        ...options,
        addGenerationPrompt: m.role === 'assistant',
      });
      if (!whole.startsWith(before)) {
        throw new TokenizerError(
          'invalid_chat_template',
          `messages[${i}]: the chat template renders the conversation before this message differently once later messages follow, so its trained text cannot be located; render it without weights or train on the conversation cut after messages[${i}]`,
        );
      }
      spans.push([before.length, this.spanEnd(messages, i, whole, before.length, options)]);
    });
    const tokens = this.tokenizer.encode(whole, { allowSpecial: true });
    return { tokens, weights: this.weightsOf(whole, tokens, spans) };
  }

  renderGenerationPrompt(
    messages: readonly MessageInput[],
    options?: GenerationPromptOptions,
  ): number[] {
    validateInput(messages, options, true);
    const extra: Record<string, unknown> = {};
    if (options?.enableThinking !== undefined) extra.enable_thinking = options.enableThinking;
    const textOut = this.renderText(messages, { ...options, addGenerationPrompt: true, extra });
    return this.tokenizer.encode(textOut, { allowSpecial: true });
  }

  parseResponse(tokens: readonly number[]): ParsedResponse {
    const { body, complete } = cutAtStop(tokens, this.stopTokens);
    let content = this.tokenizer.decode(body, { skipSpecial: false });
    let reasoning: string | undefined;
    if (this.thinkBlocks) {
      const close = content.indexOf('</think>');
      if (close >= 0) {
        reasoning = content
          .slice(0, close)
          .replace(/^\s*<think>/, '')
          .trim();
        content = content.slice(close + '</think>'.length).replace(/^\s+/, '');
      }
    }
    if (!this.hermesToolCalls)
      return { message: assistantMessage(content, [], reasoning), complete, errors: [] };
    const calls = extractToolCalls(content);
    return {
      message: assistantMessage(calls.content.trim(), calls.toolCalls, reasoning),
      complete,
      errors: calls.errors,
    };
  }

  /** Where message i's trained text ends in `whole` (see the file comment). */
  private spanEnd(
    messages: readonly MessageInput[],
    i: number,
    whole: string,
    start: number,
    options: RenderOptions | undefined,
  ): number {
    const through = this.renderText(messages.slice(0, i + 1), options);
    let end = -1;
    if (whole.startsWith(through) && through.length >= start) end = through.length;
    else {
      for (const stop of this.stopTexts) {
        const at = whole.indexOf(stop, start);
        if (at >= 0 && (end < 0 || at + stop.length < end)) end = at + stop.length;
      }
      if (end < 0) {
        throw new TokenizerError(
          'invalid_chat_template',
          `messages[${i}]: no end-of-turn token (${this.stopTexts.map((s) => JSON.stringify(s)).join(', ')}) follows this message in the rendered conversation`,
        );
      }
    }
    let lastStop = -1;
    for (const stop of this.stopTexts) {
      const at = whole.lastIndexOf(stop, end - stop.length);
      if (at >= start && at + stop.length > lastStop) lastStop = at + stop.length;
    }
    return lastStop > 0 ? lastStop : end;
  }

  /** Per-token weights from character spans of the rendered text. */
  private weightsOf(whole: string, tokens: readonly number[], spans: [number, number][]): number[] {
    let textForOffsets = whole;
    const tokenLengths = tokens.map((id) => this.tokenizer.tokenBytes(id).length);
    const total = tokenLengths.reduce((a, b) => a + b, 0);
    if (total !== utf8.encode(whole).length) {
      // A normalizing tokenizer (NFC) changed the bytes; its offsets are in the normalized text.
      textForOffsets = whole.normalize('NFC');
      if (total !== utf8.encode(textForOffsets).length)
        throw new TokenizerError(
          'invalid_tokenizer_files',
          'the tokenizer changes the text beyond NFC normalisation, so trained spans cannot be mapped to tokens',
        );
    }
    const byteSpans = spans.map(([s, e]): [number, number] => [
      byteOffset(whole, textForOffsets, s),
      byteOffset(whole, textForOffsets, e),
    ]);
    const weights: number[] = [];
    let offset = 0;
    for (const len of tokenLengths) {
      weights.push(byteSpans.some(([s, e]) => offset >= s && offset < e) ? 1 : 0);
      offset += len;
    }
    return weights;
  }
}

/** Byte offset in `target` (whole, or its normalized form) of character `pos` of `whole`. */
function byteOffset(whole: string, target: string, pos: number): number {
  const prefix = whole.slice(0, pos);
  return utf8.encode(target === whole ? prefix : prefix.normalize('NFC')).length;
}

/** The message as the template sees it: the caller's object without temper's `weight`. */
function templateMessage(m: MessageInput): Record<string, unknown> {
  const { weight: _weight, ...rest } = m as MessageInput & { weight?: unknown };
  return rest;
}

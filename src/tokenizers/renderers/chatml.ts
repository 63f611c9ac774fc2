/**
 * ChatML renderers, laid out exactly as Qwen3's chat template (tokenizer_config.json of the
 * Qwen3 models) lays them out:
 *
 *   <|im_start|>system\n{system}<|im_end|>\n
 *   <|im_start|>user\n{user}<|im_end|>\n
 *   <|im_start|>assistant\n{content}\n<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call><|im_end|>\n
 *   <|im_start|>user\n<tool_response>\n{tool}\n</tool_response><|im_end|>\n
 *
 * Tools go into the system message as a `# Tools` block; consecutive tool messages share one
 * user turn. `qwen3` adds the template's thinking rules: assistant turns after the last user
 * query carry `<think>\n{reasoning}\n</think>\n\n` (empty for the final turn when no reasoning
 * is given), reasoning in earlier turns is dropped. `chatml` is the same layout without them.
 *
 * Weights: `<|im_start|>assistant\n` is 0; the assistant's content, tool calls and closing
 * `<|im_end|>` are 1; the newline after `<|im_end|>` is 0. Other messages are 0 unless they
 * set `weight: 1` (then their body and `<|im_end|>` are 1; their header stays 0).
 */

import type { ChatMessage, MessageInput, ToolSpec } from '../messages.js';
import { pythonJson } from '../messages.js';
import type { Tokenizer } from '../types.js';
import {
  assistantMessage,
  cutAtStop,
  extractToolCalls,
  messageWeight,
  requireSpecial,
  toolCallText,
  validateInput,
} from './common.js';
import { BREAK, type Part, special, text, tokenizeParts, type Weight } from './parts.js';
import type {
  GenerationPromptOptions,
  ParsedResponse,
  RenderedConversation,
  Renderer,
  RenderOptions,
} from './types.js';

const TOOLS_PREAMBLE =
  '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' +
  'You are provided with function signatures within <tools></tools> XML tags:\n<tools>';
const TOOLS_POSTAMBLE =
  '\n</tools>\n\nFor each function call, return a json object with function name and arguments ' +
  'within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>';

const EMPTY_THINK = '<think>\n\n</think>\n\n';

// Python's str.strip('\n') family.
const lstripNl = (s: string) => s.replace(/^\n+/, '');
const rstripNl = (s: string) => s.replace(/\n+$/, '');
const stripNl = (s: string) => rstripNl(lstripNl(s));

export interface ChatMLRendererOptions {
  /** Apply Qwen3's `<think>` rules (the `qwen3` renderer). */
  thinking: boolean;
  /** Name to report. */
  name: string;
}

export class ChatMLRenderer implements Renderer {
  readonly name: string;
  readonly tokenizer: Tokenizer;
  readonly stopTokens: readonly number[];
  private readonly imStart: number;
  private readonly imEnd: number;
  private readonly thinking: boolean;

  constructor(tokenizer: Tokenizer, options: ChatMLRendererOptions) {
    this.name = options.name;
    this.tokenizer = tokenizer;
    this.thinking = options.thinking;
    this.imStart = requireSpecial(tokenizer, '<|im_start|>', options.name);
    this.imEnd = requireSpecial(tokenizer, '<|im_end|>', options.name);
    const endOfText = tokenizer.specialTokenId('<|endoftext|>');
    this.stopTokens = endOfText === undefined ? [this.imEnd] : [this.imEnd, endOfText];
  }

  render(messages: readonly MessageInput[], options?: RenderOptions): RenderedConversation {
    const input = validateInput(messages, options, true);
    return tokenizeParts(this.tokenizer, this.layout(input.messages, input.tools));
  }

  renderGenerationPrompt(
    messages: readonly MessageInput[],
    options?: GenerationPromptOptions,
  ): number[] {
    const input = validateInput(messages, options, false);
    const parts = this.layout(input.messages, input.tools);
    parts.push(special(this.imStart, 0), text('assistant\n', 0), BREAK);
    if (this.thinking && options?.enableThinking === false) parts.push(text(EMPTY_THINK, 0));
    return tokenizeParts(this.tokenizer, parts).tokens;
  }

  parseResponse(tokens: readonly number[]): ParsedResponse {
    const { body, complete } = cutAtStop(tokens, this.stopTokens);
    let rest = this.tokenizer.decode(body);
    let reasoning: string | undefined;
    if (this.thinking) {
      const close = rest.indexOf('</think>');
      if (close >= 0) {
        reasoning = stripNl(rest.slice(0, close).replace(/^\s*<think>/, ''));
        rest = lstripNl(rest.slice(close + '</think>'.length));
      } else if (/^\s*<think>/.test(rest)) {
        // Cut off while still thinking.
        reasoning = lstripNl(rest.replace(/^\s*<think>/, ''));
        rest = '';
      }
    }
    const { content, toolCalls, errors } = extractToolCalls(rest);
    return { message: assistantMessage(content, toolCalls, reasoning), complete, errors };
  }

  /** The parts of a conversation, following Qwen3's chat template line by line. */
  private layout(messages: readonly ChatMessage[], tools: readonly ToolSpec[]): Part[] {
    const parts: Part[] = [];
    const first = messages[0];
    const sysWeight: Weight = first?.role === 'system' ? messageWeight(first) : 0;

    if (tools.length > 0) {
      parts.push(special(this.imStart, 0), text('system\n', 0));
      if (first?.role === 'system') parts.push(text(`${first.content}\n\n`, sysWeight));
      parts.push(text(TOOLS_PREAMBLE, sysWeight));
      for (const tool of tools) parts.push(text(`\n${pythonJson(tool)}`, sysWeight));
      parts.push(text(TOOLS_POSTAMBLE, sysWeight), special(this.imEnd, sysWeight), text('\n', 0));
    } else if (first?.role === 'system') {
      parts.push(
        special(this.imStart, 0),
        text('system\n', 0),
        text(first.content, sysWeight),
        special(this.imEnd, sysWeight),
        text('\n', 0),
      );
    }

    // The last user message that is a real query (not a wrapped tool response).
    let lastQueryIndex = messages.length - 1;
    for (let i = messages.length - 1; i >= 0; i--) {
      const m = messages[i]!;
      if (
        m.role === 'user' &&
        !(m.content.startsWith('<tool_response>') && m.content.endsWith('</tool_response>'))
      ) {
        lastQueryIndex = i;
        break;
      }
    }

    messages.forEach((m, i) => {
      const w = messageWeight(m);
      if (m.role === 'user' || (m.role === 'system' && i > 0)) {
        parts.push(
          special(this.imStart, 0),
          text(`${m.role}\n`, 0),
          text(m.content, w),
          special(this.imEnd, w),
          text('\n', 0),
        );
      } else if (m.role === 'assistant') {
        parts.push(special(this.imStart, 0), text('assistant\n', 0), BREAK);
        parts.push(text(this.assistantBody(m, i, i === messages.length - 1, lastQueryIndex), w));
        parts.push(special(this.imEnd, w), text('\n', 0));
      } else if (m.role === 'tool') {
        const prev = messages[i - 1];
        const next = messages[i + 1];
        if (prev?.role !== 'tool') parts.push(special(this.imStart, 0), text('user', 0));
        parts.push(text(`\n<tool_response>\n${m.content}\n</tool_response>`, w));
        if (next?.role !== 'tool') parts.push(special(this.imEnd, w), text('\n', 0));
      }
      // role === 'system' && i === 0: rendered above.
    });
    return parts;
  }

  private assistantBody(
    m: ChatMessage,
    index: number,
    isLast: boolean,
    lastQueryIndex: number,
  ): string {
    let content = m.content;
    let body: string;
    if (this.thinking) {
      let reasoning = '';
      if (m.reasoningContent !== undefined) {
        reasoning = m.reasoningContent;
      } else if (content.includes('</think>')) {
        const pieces = content.split('</think>');
        reasoning = lstripNl(rstripNl(pieces[0]!).split('<think>').at(-1)!);
        content = lstripNl(pieces.at(-1)!);
      }
      if (index > lastQueryIndex && (isLast || reasoning.length > 0)) {
        body = `<think>\n${stripNl(reasoning)}\n</think>\n\n${lstripNl(content)}`;
      } else {
        body = content;
      }
    } else {
      body = content;
    }
    (m.toolCalls ?? []).forEach((call, j) => {
      if ((j === 0 && content.length > 0) || j > 0) body += '\n';
      body += toolCallText(call);
    });
    return body;
  }
}

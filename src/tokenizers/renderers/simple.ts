/**
 * A plain-text renderer for small byte-level models (works with any tokenizer):
 *
 *   Tools: {"type": "function", ...}\n         (one line per tool, when tools are given)
 *   System: {system}\n
 *   User: {user}\n
 *   Assistant: {content}\n<tool_call>\n{...}\n</tool_call><eos>\n
 *   Tool: {tool}\n
 *
 * An assistant turn ends with the tokenizer's EOS token (byte tokenizer: `<|endoftext|>`),
 * which is also the stop token. Weights: `Assistant:` is 0; ` {content}` and the EOS are 1; the
 * newline after it is 0. Other messages are 0 unless `weight: 1` (then ` {content}\n` is 1).
 */

import type { ChatMessage, MessageInput, ToolSpec } from '../messages.js';
import { pythonJson } from '../messages.js';
import type { Tokenizer } from '../types.js';
import {
  assistantMessage,
  cutAtStop,
  extractToolCalls,
  messageWeight,
  toolCallText,
  validateInput,
} from './common.js';
import { BREAK, type Part, special, text, tokenizeParts } from './parts.js';
import type {
  GenerationPromptOptions,
  ParsedResponse,
  RenderedConversation,
  Renderer,
  RenderOptions,
} from './types.js';

const ROLE_LABEL = {
  system: 'System',
  user: 'User',
  assistant: 'Assistant',
  tool: 'Tool',
} as const;

export class SimpleRenderer implements Renderer {
  readonly name = 'simple';
  readonly tokenizer: Tokenizer;
  readonly stopTokens: readonly number[];

  constructor(tokenizer: Tokenizer) {
    this.tokenizer = tokenizer;
    this.stopTokens = [tokenizer.eosId];
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
    parts.push(text('Assistant:', 0), BREAK);
    return tokenizeParts(this.tokenizer, parts).tokens;
  }

  parseResponse(tokens: readonly number[]): ParsedResponse {
    const { body, complete } = cutAtStop(tokens, this.stopTokens);
    const decoded = this.tokenizer.decode(body);
    const rest = decoded.startsWith(' ') ? decoded.slice(1) : decoded;
    const { content, toolCalls, errors } = extractToolCalls(rest);
    return { message: assistantMessage(content, toolCalls, undefined), complete, errors };
  }

  private layout(messages: readonly ChatMessage[], tools: readonly ToolSpec[]): Part[] {
    const parts: Part[] = [];
    for (const tool of tools) parts.push(text(`Tools: ${pythonJson(tool)}\n`, 0));
    for (const m of messages) {
      const w = messageWeight(m);
      const label = ROLE_LABEL[m.role];
      if (m.role === 'assistant') {
        let body = ` ${m.content}`;
        (m.toolCalls ?? []).forEach((call, j) => {
          if (j > 0 || m.content.length > 0) body += '\n';
          body += toolCallText(call);
        });
        parts.push(text(`${label}:`, 0), BREAK, text(body, w));
        parts.push(special(this.tokenizer.eosId, w), text('\n', 0));
      } else {
        parts.push(text(`${label}:`, 0), text(` ${m.content}\n`, w));
      }
    }
    return parts;
  }
}

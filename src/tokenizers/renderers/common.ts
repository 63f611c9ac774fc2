/** Helpers shared by renderers. */

import { TokenizerError } from '../errors.js';
import {
  type ChatMessage,
  type MessageInput,
  pythonJson,
  type ToolCall,
  type ToolSpec,
  validateMessages,
  validateTools,
} from '../messages.js';
import type { Tokenizer } from '../types.js';
import type { Weight } from './parts.js';
import type { ParsedResponse, RenderOptions } from './types.js';

export function requireSpecial(tokenizer: Tokenizer, text: string, renderer: string): number {
  const id = tokenizer.specialTokenId(text);
  if (id === undefined) {
    throw new TokenizerError(
      'missing_special_token',
      `renderer ${renderer} needs the special token ${text}, which tokenizer ${tokenizer.name} does not have; ` +
        'pick a renderer made for this tokenizer (e.g. "simple")',
    );
  }
  return id;
}

export function validateInput(
  messages: readonly MessageInput[],
  options: RenderOptions | undefined,
  requireNonEmpty: boolean,
): { messages: ChatMessage[]; tools: ToolSpec[] } {
  const valid = validateMessages(messages);
  if (requireNonEmpty && valid.length === 0) {
    throw new TokenizerError('invalid_messages', 'messages: at least one message is needed');
  }
  return { messages: valid, tools: validateTools(options?.tools) };
}

/** The weight of a message: its own `weight`, else 1 for assistant messages and 0 for others. */
export function messageWeight(m: ChatMessage): Weight {
  return m.weight ?? (m.role === 'assistant' ? 1 : 0);
}

/** `<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>` as Qwen's template writes it. */
export function toolCallText(call: ToolCall): string {
  const args = typeof call.arguments === 'string' ? call.arguments : pythonJson(call.arguments);
  return `<tool_call>\n{"name": "${call.name}", "arguments": ${args}}\n</tool_call>`;
}

const TOOL_CALL_RE = /<tool_call>([\s\S]*?)<\/tool_call>/g;

/** Pull `<tool_call>{json}</tool_call>` blocks out of sampled text. */
export function extractToolCalls(textIn: string): {
  content: string;
  toolCalls: ToolCall[];
  errors: string[];
} {
  const toolCalls: ToolCall[] = [];
  const errors: string[] = [];
  let removed = false;
  const content = textIn.replace(TOOL_CALL_RE, (block: string, body: string) => {
    let value: unknown;
    try {
      value = JSON.parse(body.trim());
    } catch (err) {
      errors.push(
        `tool call is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
      );
      return block;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      errors.push('tool call must be a JSON object {"name", "arguments"}');
      return block;
    }
    const rec = value as Record<string, unknown>;
    const args = rec.arguments ?? {};
    if (typeof rec.name !== 'string' || rec.name.length === 0) {
      errors.push('tool call has no "name" string');
      return block;
    }
    if (
      typeof args !== 'string' &&
      (typeof args !== 'object' || args === null || Array.isArray(args))
    ) {
      errors.push(`tool call ${rec.name}: "arguments" must be an object or a string`);
      return block;
    }
    toolCalls.push({ name: rec.name, arguments: args as ToolCall['arguments'] });
    removed = true;
    return '';
  });
  return { content: removed ? content.trimEnd() : content, toolCalls, errors };
}

/** Cut sampled tokens at the first stop token. */
export function cutAtStop(
  tokens: readonly number[],
  stopTokens: readonly number[],
): { body: number[]; complete: boolean } {
  const idx = tokens.findIndex((t) => stopTokens.includes(t));
  return idx < 0
    ? { body: [...tokens], complete: false }
    : { body: tokens.slice(0, idx), complete: true };
}

export function assistantMessage(
  content: string,
  toolCalls: ToolCall[],
  reasoning: string | undefined,
): ParsedResponse['message'] {
  const message: ParsedResponse['message'] = { role: 'assistant', content };
  if (toolCalls.length > 0) message.toolCalls = toolCalls;
  if (reasoning !== undefined) message.reasoningContent = reasoning;
  return message;
}

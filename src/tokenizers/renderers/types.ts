import type { ChatMessage, MessageInput, ToolSpecInput } from '../messages.js';
import type { Tokenizer } from '../types.js';
import type { RenderedConversation } from './parts.js';

export type { RenderedConversation } from './parts.js';

export interface RenderOptions {
  /** Tools the assistant may call (OpenAI `tools` list); rendered where the template puts them. */
  tools?: readonly ToolSpecInput[] | null;
}

export interface GenerationPromptOptions extends RenderOptions {
  /**
   * Qwen3 only: false appends an empty `<think>\n\n</think>\n\n` after the assistant header so
   * the model answers without reasoning (the template's `enable_thinking=False`). Default true.
   */
  enableThinking?: boolean;
}

export interface ParsedResponse {
  /** The assistant message the sampled tokens spell. */
  message: ChatMessage & { role: 'assistant' };
  /** True when the tokens reached a stop token (the turn ended); false when cut short. */
  complete: boolean;
  /** Tool-call blocks that could not be parsed; their text is left in the content. */
  errors: string[];
}

/** Turns conversations into tokens + loss weights, and sampled tokens back into a message. */
export interface Renderer {
  readonly name: string;
  readonly tokenizer: Tokenizer;
  /** Tokens that end an assistant turn: stop sampling at any of them. */
  readonly stopTokens: readonly number[];
  /**
   * Tokens of a whole conversation and a weight per token: assistant content and its end token
   * get 1, everything else (system, user, tool, headers) 0; a message's `weight` overrides its
   * role's default (`weight: 0` on an assistant message: not trained; `weight: 1` on another
   * message: its body is trained too). Throws TokenizerError('invalid_messages') on bad input.
   */
  render(messages: readonly MessageInput[], options?: RenderOptions): RenderedConversation;
  /** Prompt tokens for sampling the next assistant turn: the conversation + the assistant header. */
  renderGenerationPrompt(
    messages: readonly MessageInput[],
    options?: GenerationPromptOptions,
  ): number[];
  /** Parse sampled tokens (what followed the generation prompt) into an assistant message. */
  parseResponse(tokens: readonly number[]): ParsedResponse;
}

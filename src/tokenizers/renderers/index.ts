import { TokenizerError } from '../errors.js';
import type { Tokenizer } from '../types.js';
import { ChatMLRenderer } from './chatml.js';
import { SimpleRenderer } from './simple.js';
import type { Renderer } from './types.js';

const FACTORIES = {
  /** Qwen3's chat template exactly: ChatML + tools block + `<tool_call>` + `<think>` rules. */
  qwen3: (t: Tokenizer): Renderer => new ChatMLRenderer(t, { thinking: true, name: 'qwen3' }),
  /** Qwen3's layout without the `<think>` rules (plain ChatML with Qwen-style tools). */
  chatml: (t: Tokenizer): Renderer => new ChatMLRenderer(t, { thinking: false, name: 'chatml' }),
  /** `User: …\nAssistant: …<eos>\n`, for byte-level models. */
  simple: (t: Tokenizer): Renderer => new SimpleRenderer(t),
} as const;

export type RendererName = keyof typeof FACTORIES;

/** Names getRenderer knows. */
export const RENDERER_NAMES = Object.keys(FACTORIES) as RendererName[];

export function isRendererName(name: string): name is RendererName {
  return Object.hasOwn(FACTORIES, name);
}

/**
 * The renderer called `name` for `tokenizer`. Throws TokenizerError('unknown_renderer') for an
 * unknown name, and 'missing_special_token' when the tokenizer lacks a token the renderer needs.
 */
export function getRenderer(name: string, tokenizer: Tokenizer): Renderer {
  if (!isRendererName(name)) {
    throw new TokenizerError(
      'unknown_renderer',
      `unknown renderer ${JSON.stringify(name)}; known renderers: ${RENDERER_NAMES.join(', ')}`,
    );
  }
  return FACTORIES[name](tokenizer);
}

export { ChatMLRenderer } from './chatml.js';
export { JinjaRenderer, type JinjaRendererOptions } from './jinja.js';
export type { Part, Weight } from './parts.js';
export { SimpleRenderer } from './simple.js';
export type {
  GenerationPromptOptions,
  ParsedResponse,
  RenderedConversation,
  Renderer,
  RenderOptions,
} from './types.js';

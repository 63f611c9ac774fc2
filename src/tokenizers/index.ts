/** Tokenizers and chat renderers: the public face of src/tokenizers. */

export {
  BYTE_ENDOFTEXT_ID,
  BYTE_IM_END_ID,
  BYTE_IM_START_ID,
  BYTE_MODEL_VOCAB_SIZE,
  BYTE_PAD_ID,
  BYTE_SPECIAL_TOKENS,
  BYTE_TOKENIZER_VOCAB_SIZE,
  ByteTokenizer,
  createByteTokenizer,
} from './byte.js';
export { TokenizerError, type TokenizerErrorCode } from './errors.js';
export {
  bundledQwen3TokenizerDir,
  createHfTokenizer,
  HfTokenizer,
  type HfTokenizerOptions,
  loadBundledQwen3Tokenizer,
  loadHfTokenizer,
  QWEN3_TOKENIZER_PACKAGE,
} from './hf.js';
export {
  type ChatMessage,
  type Conversation,
  type ConversationInput,
  conversationSchema,
  type MessageInput,
  messageSchema,
  messagesSchema,
  pythonJson,
  type Role,
  type ToolCall,
  type ToolCallArguments,
  type ToolSpec,
  type ToolSpecInput,
  toolSpecSchema,
  validateConversation,
  validateMessages,
  validateTools,
} from './messages.js';
export { loadChatTemplate, loadModelRenderer, loadModelTokenizer } from './model-files.js';
export {
  ChatMLRenderer,
  type GenerationPromptOptions,
  getRenderer,
  isRendererName,
  JinjaRenderer,
  type JinjaRendererOptions,
  type ParsedResponse,
  RENDERER_NAMES,
  type RenderedConversation,
  type Renderer,
  type RendererName,
  type RenderOptions,
  SimpleRenderer,
} from './renderers/index.js';
export type { DecodeOptions, EncodeOptions, Tokenizer } from './types.js';

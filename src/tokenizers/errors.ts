/**
 * Errors raised by tokenizers and renderers. Every error carries a stable `code`, the HTTP
 * status and gRPC status it maps to, and a message that says what was wrong and what to do.
 */

export type TokenizerErrorCode =
  /** Messages, tools or render options failed validation. */
  | 'invalid_messages'
  /** A token id passed to decode is not an id of this tokenizer. */
  | 'invalid_token_id'
  /** getRenderer was asked for a name it does not know. */
  | 'unknown_renderer'
  /** The renderer needs a special token the tokenizer does not have. */
  | 'missing_special_token'
  /** tokenizer.json / tokenizer_config.json could not be read or is not supported. */
  | 'invalid_tokenizer_files'
  /** A model's chat template failed to parse or to render (its own `raise_exception` included). */
  | 'invalid_chat_template';

const HTTP_STATUS: Record<TokenizerErrorCode, number> = {
  invalid_messages: 400,
  invalid_token_id: 400,
  unknown_renderer: 400,
  missing_special_token: 400,
  invalid_tokenizer_files: 400,
  invalid_chat_template: 400,
};

/** gRPC INVALID_ARGUMENT (3) for every code: all of them are the caller's input. */
const GRPC_STATUS: Record<TokenizerErrorCode, number> = {
  invalid_messages: 3,
  invalid_token_id: 3,
  unknown_renderer: 3,
  missing_special_token: 3,
  invalid_tokenizer_files: 3,
  invalid_chat_template: 3,
};

export class TokenizerError extends Error {
  readonly code: TokenizerErrorCode;
  readonly httpStatus: number;
  readonly grpcStatus: number;

  constructor(code: TokenizerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TokenizerError';
    this.code = code;
    this.httpStatus = HTTP_STATUS[code];
    this.grpcStatus = GRPC_STATUS[code];
  }
}

/** The face every tokenizer shows: the byte tokenizer and HF `tokenizer.json` tokenizers alike. */

export interface EncodeOptions {
  /**
   * Recognise special tokens (`<|im_start|>`, `<|endoftext|>`, …) written in the text and emit
   * their ids. Default false: the text is encoded as plain text, so user content can never
   * forge a control token. Added tokens that are *not* special (Qwen's `<think>`,
   * `<tool_call>`, …) are always recognised, as HuggingFace tokenizers do.
   */
  allowSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens from the output instead of writing their text. Default false. */
  skipSpecial?: boolean;
}

export interface Tokenizer {
  /** A short human name (`byte`, or the tokenizer's name/path). */
  readonly name: string;
  /**
   * Number of token ids the tokenizer defines (max id + 1). Models may have a larger, padded
   * embedding; ids at or above this are not tokens and `decode` rejects them.
   */
  readonly vocabSize: number;
  /** The token that ends a generation (Qwen3: `<|im_end|>`; byte tokenizer: `<|endoftext|>`). */
  readonly eosId: number;
  /** The padding token, if the tokenizer has one. */
  readonly padId: number | undefined;
  /** Every special token, by its text. */
  readonly specialTokens: ReadonlyMap<string, number>;

  /** Text to ids. Never adds BOS/EOS. */
  encode(text: string, options?: EncodeOptions): number[];
  /** Ids to text; bytes that are not valid UTF-8 become U+FFFD. Throws on ids outside [0, vocabSize). */
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /** The exact bytes a token stands for (a special token: the UTF-8 of its text). */
  tokenBytes(id: number): Uint8Array;
  /** The id of a special token by text, or undefined. */
  specialTokenId(text: string): number | undefined;
  /** Whether an id is a special token. */
  isSpecial(id: number): boolean;
}

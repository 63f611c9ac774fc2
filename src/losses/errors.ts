/**
 * Errors raised by losses, advantages and the autodiff. Every error carries a stable `code`,
 * the HTTP and gRPC status it maps to, and — for bad per-datum input — the datum index and
 * the `loss_fn_inputs` field at fault, so a caller can point at the exact row to fix.
 */

export type LossErrorCode =
  /** A datum or logprob vector is malformed: missing field, length mismatch, non-finite value. */
  | 'invalid_loss_input'
  /** A loss or advantage configuration is out of range or has unknown keys. */
  | 'invalid_loss_config'
  /** A loss name that is neither built in nor registered. */
  | 'unknown_loss'
  /** A loss function returned something unusable: not a scalar, not finite, bad metric keys. */
  | 'invalid_loss_output'
  /** Vector shapes do not fit an autodiff operation (a programming error in a custom loss). */
  | 'shape_mismatch';

/** Every code is the caller's input (their data, config or custom loss): 400 / INVALID_ARGUMENT. */
const HTTP_STATUS: Record<LossErrorCode, number> = {
  invalid_loss_input: 400,
  invalid_loss_config: 400,
  unknown_loss: 400,
  invalid_loss_output: 400,
  shape_mismatch: 400,
};

const GRPC_INVALID_ARGUMENT = 3;

export interface LossErrorDetails {
  /** Index of the offending datum in the batch, when the error is about one datum. */
  datum?: number;
  /** The `loss_fn_inputs` field (or `logprobs`) at fault. */
  field?: string;
  cause?: unknown;
}

export class LossError extends Error {
  readonly code: LossErrorCode;
  readonly httpStatus: number;
  readonly grpcStatus: number;
  readonly datum: number | undefined;
  readonly field: string | undefined;

  constructor(code: LossErrorCode, message: string, details: LossErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'LossError';
    this.code = code;
    this.httpStatus = HTTP_STATUS[code];
    this.grpcStatus = GRPC_INVALID_ARGUMENT;
    this.datum = details.datum;
    this.field = details.field;
  }
}

/** Shorthand for the most common error: one field of one datum is wrong. */
export function inputError(datum: number, field: string, message: string): LossError {
  return new LossError('invalid_loss_input', `datum ${datum}: ${message}`, { datum, field });
}

export function configError(message: string, cause?: unknown): LossError {
  return new LossError('invalid_loss_config', message, { cause });
}

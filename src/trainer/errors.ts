/**
 * Typed errors of the trainer pod and the Training API client. Each carries a stable `code`,
 * the one gRPC status and HTTP status it maps to, and a message that says what to do. The pod
 * sends the code in the trailing metadata key `temper-error-code`; the SDK rebuilds the same
 * error from a gRPC failure, so callers branch on `code`, never on message text.
 */
import * as grpc from '@grpc/grpc-js';
import type { CheckpointError } from '../checkpoints/dcp/errors.js';

export const ERROR_CODE_METADATA_KEY = 'temper-error-code';

export type TrainerErrorCode =
  // INVALID_ARGUMENT: the caller's input is wrong; nothing changed.
  | 'invalid_argument'
  | 'invalid_datum'
  | 'out_of_vocab'
  | 'unknown_loss'
  | 'invalid_loss_input'
  | 'invalid_loss_config'
  | 'invalid_loss_output'
  | 'shape_mismatch'
  // NOT_FOUND
  | 'unknown_model'
  | 'unknown_session'
  | 'unknown_trainer'
  | 'checkpoint_not_found'
  // ALREADY_EXISTS
  | 'checkpoint_exists'
  // FAILED_PRECONDITION: the request is well formed but the model's state refuses it.
  | 'no_gradients'
  | 'no_pending_forward'
  | 'forward_only'
  | 'seq_expired'
  | 'seq_conflict'
  | 'seq_gap'
  | 'non_finite_gradients'
  | 'client_closed'
  | 'duplicate_client'
  | 'checkpoint_incompatible'
  | 'not_resumable'
  | 'not_lora'
  | 'no_checkpoint_store'
  | 'no_base_snapshot'
  // DATA_LOSS: a stored checkpoint is damaged.
  | 'checkpoint_corrupt'
  // RESOURCE_EXHAUSTED
  | 'too_many_models'
  // UNAVAILABLE: the pod is going away or cannot be reached.
  | 'shutting_down'
  | 'unavailable'
  | 'launch_failed'
  // UNIMPLEMENTED: a piece of the platform that does not exist yet.
  | 'not_implemented'
  | 'deadline_exceeded'
  | 'internal';

const GRPC_STATUS: Record<TrainerErrorCode, grpc.status> = {
  invalid_argument: grpc.status.INVALID_ARGUMENT,
  invalid_datum: grpc.status.INVALID_ARGUMENT,
  out_of_vocab: grpc.status.INVALID_ARGUMENT,
  unknown_loss: grpc.status.INVALID_ARGUMENT,
  invalid_loss_input: grpc.status.INVALID_ARGUMENT,
  invalid_loss_config: grpc.status.INVALID_ARGUMENT,
  invalid_loss_output: grpc.status.INVALID_ARGUMENT,
  shape_mismatch: grpc.status.INVALID_ARGUMENT,
  unknown_model: grpc.status.NOT_FOUND,
  unknown_session: grpc.status.NOT_FOUND,
  unknown_trainer: grpc.status.NOT_FOUND,
  checkpoint_not_found: grpc.status.NOT_FOUND,
  checkpoint_exists: grpc.status.ALREADY_EXISTS,
  no_gradients: grpc.status.FAILED_PRECONDITION,
  no_pending_forward: grpc.status.FAILED_PRECONDITION,
  forward_only: grpc.status.FAILED_PRECONDITION,
  seq_expired: grpc.status.FAILED_PRECONDITION,
  seq_conflict: grpc.status.FAILED_PRECONDITION,
  seq_gap: grpc.status.FAILED_PRECONDITION,
  non_finite_gradients: grpc.status.FAILED_PRECONDITION,
  client_closed: grpc.status.FAILED_PRECONDITION,
  duplicate_client: grpc.status.FAILED_PRECONDITION,
  checkpoint_incompatible: grpc.status.FAILED_PRECONDITION,
  not_resumable: grpc.status.FAILED_PRECONDITION,
  not_lora: grpc.status.FAILED_PRECONDITION,
  no_checkpoint_store: grpc.status.FAILED_PRECONDITION,
  no_base_snapshot: grpc.status.FAILED_PRECONDITION,
  checkpoint_corrupt: grpc.status.DATA_LOSS,
  too_many_models: grpc.status.RESOURCE_EXHAUSTED,
  shutting_down: grpc.status.UNAVAILABLE,
  unavailable: grpc.status.UNAVAILABLE,
  launch_failed: grpc.status.UNAVAILABLE,
  not_implemented: grpc.status.UNIMPLEMENTED,
  deadline_exceeded: grpc.status.DEADLINE_EXCEEDED,
  internal: grpc.status.INTERNAL,
};

const HTTP_STATUS: Partial<Record<grpc.status, number>> = {
  [grpc.status.INVALID_ARGUMENT]: 400,
  [grpc.status.NOT_FOUND]: 404,
  [grpc.status.FAILED_PRECONDITION]: 412,
  [grpc.status.UNAVAILABLE]: 503,
  [grpc.status.UNIMPLEMENTED]: 501,
  [grpc.status.RESOURCE_EXHAUSTED]: 429,
  [grpc.status.ALREADY_EXISTS]: 409,
  [grpc.status.DATA_LOSS]: 500,
  [grpc.status.DEADLINE_EXCEEDED]: 504,
  [grpc.status.INTERNAL]: 500,
};

/** The code a gRPC status falls back to when the pod sent none (a transport failure). */
const STATUS_CODE: Partial<Record<grpc.status, TrainerErrorCode>> = {
  [grpc.status.INVALID_ARGUMENT]: 'invalid_argument',
  [grpc.status.NOT_FOUND]: 'unknown_model',
  [grpc.status.UNAVAILABLE]: 'unavailable',
  [grpc.status.UNIMPLEMENTED]: 'not_implemented',
  [grpc.status.DEADLINE_EXCEEDED]: 'deadline_exceeded',
  [grpc.status.CANCELLED]: 'unavailable',
};

export function isTrainerErrorCode(value: string): value is TrainerErrorCode {
  return Object.hasOwn(GRPC_STATUS, value);
}

export interface TrainerErrorDetails {
  /** Index of the offending datum in the batch, when the error is about one datum. */
  datum?: number;
  /** The field at fault (`loss_fn_inputs.weights`, `model_input`, ...). */
  field?: string;
  cause?: unknown;
}

export class TrainerError extends Error {
  readonly code: TrainerErrorCode;
  readonly grpcStatus: grpc.status;
  readonly httpStatus: number;
  readonly datum: number | undefined;
  readonly field: string | undefined;

  constructor(code: TrainerErrorCode, message: string, details: TrainerErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'TrainerError';
    this.code = code;
    this.grpcStatus = GRPC_STATUS[code];
    this.httpStatus = HTTP_STATUS[this.grpcStatus] ?? 500;
    this.datum = details.datum;
    this.field = details.field;
  }
}

/** The grpc-js error object a handler reports for `error`, with the code in the metadata. */
export function toGrpcError(error: TrainerError): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_METADATA_KEY, error.code);
  return { code: error.grpcStatus, details: error.message, metadata };
}

/** Rebuilds the typed error from a failed gRPC call (client side). */
export function fromGrpcError(error: unknown, what: string): TrainerError {
  if (error instanceof TrainerError) return error;
  const e = error as Partial<grpc.ServiceError> | null;
  if (e && typeof e === 'object' && typeof e.code === 'number') {
    const sent = e.metadata?.get(ERROR_CODE_METADATA_KEY)[0];
    const code =
      typeof sent === 'string' && isTrainerErrorCode(sent)
        ? sent
        : (STATUS_CODE[e.code as grpc.status] ?? 'internal');
    const details = e.details || e.message || grpc.status[e.code] || 'unknown error';
    const message = sent ? details : `${what}: ${details}`;
    return new TrainerError(code, message, { cause: error });
  }
  return new TrainerError(
    'internal',
    `${what}: ${error instanceof Error ? error.message : String(error)}`,
    {
      cause: error,
    },
  );
}

/** The typed error a checkpoint-layer error (src/checkpoints) stands for. */
export function checkpointErrorToTrainer(error: CheckpointError): TrainerError {
  const code: TrainerErrorCode =
    error.code === 'not_found'
      ? 'checkpoint_not_found'
      : error.code === 'already_exists'
        ? 'checkpoint_exists'
        : error.code === 'corrupt'
          ? 'checkpoint_corrupt'
          : error.code === 'incompatible'
            ? 'checkpoint_incompatible'
            : 'invalid_argument';
  return new TrainerError(code, error.message, { cause: error });
}

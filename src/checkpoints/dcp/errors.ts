// Errors raised by DCP checkpoints. Every error carries a stable `code`, the HTTP and gRPC
// status it maps to, and a message that names the checkpoint (and file) and says what to do.

export type CheckpointErrorCode =
  /** A checkpoint name or store prefix is not a plain name (path traversal, bad characters). */
  | 'invalid_name'
  /** Bad arguments: rank/world size out of range, malformed state. */
  | 'invalid_argument'
  /** No committed, unexpired checkpoint of that name. */
  | 'not_found'
  /** A checkpoint of that name is already committed. */
  | 'already_exists'
  /** A file is missing, truncated or fails its checksum, or the metadata is malformed. */
  | 'corrupt'
  /** The checkpoint does not fit the model it is loaded into. */
  | 'incompatible';

const STATUS: Record<CheckpointErrorCode, { http: number; grpc: number }> = {
  invalid_name: { http: 400, grpc: 3 },
  invalid_argument: { http: 400, grpc: 3 },
  not_found: { http: 404, grpc: 5 },
  already_exists: { http: 409, grpc: 6 },
  corrupt: { http: 500, grpc: 15 },
  incompatible: { http: 400, grpc: 9 },
};

export class CheckpointError extends Error {
  readonly code: CheckpointErrorCode;
  readonly httpStatus: number;
  readonly grpcStatus: number;
  /** The file at fault (relative to the checkpoint), when there is one. */
  readonly file: string | undefined;

  constructor(
    code: CheckpointErrorCode,
    message: string,
    details: { file?: string; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'CheckpointError';
    this.code = code;
    this.httpStatus = STATUS[code].http;
    this.grpcStatus = STATUS[code].grpc;
    this.file = details.file;
  }
}

/** Checkpoint names: one path segment of letters, digits, '.', '_' and '-', at most 128 long. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function validateCheckpointName(name: string): string {
  if (typeof name !== 'string' || !NAME.test(name) || name.includes('..'))
    throw new CheckpointError(
      'invalid_name',
      `checkpoint name '${String(name)}' is not allowed: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..' or '/'`,
    );
  return name;
}

/** Store prefixes: '' or '/'-separated plain segments (no '.', '..' or empty segments). */
export function validatePrefix(prefix: string): string {
  const p = prefix.replace(/\/+$/, '');
  if (p === '') return '';
  for (const seg of p.split('/'))
    if (!/^[A-Za-z0-9_][A-Za-z0-9._=-]*$/.test(seg) || seg === '.' || seg === '..')
      throw new CheckpointError(
        'invalid_name',
        `store prefix '${prefix}' is not allowed: segment '${seg}' must be letters, digits, '.', '_', '=' or '-' (no '.', '..' or empty segments)`,
      );
  return p;
}

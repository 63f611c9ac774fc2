/**
 * The one error shape of the REST API (Google AIP-193, as gRPC gateways write it):
 *
 *   {"error": {"code": 404, "status": "NOT_FOUND", "message": "...", "details": [...]}}
 *
 * `code` is the HTTP status, `status` the gRPC code name. Every error a component throws
 * (store, checkpoints, deployments, losses, dataset validation, zod, fastify) is mapped here
 * so handlers can simply throw.
 */
import type { FastifyError } from 'fastify';
import { z } from 'zod';
import { CheckpointError } from '../../checkpoints/dcp/errors.js';
import { ObjectStoreError } from '../../checkpoints/object-store/types.js';
import { DatasetValidationError } from '../../datasets/errors.js';
import { DeploymentError } from '../../deployments/registry.js';
import { LossError } from '../../losses/errors.js';
import { OrchestrationError } from '../../orchestration/jobs.js';
import { StoreError } from '../../store/index.js';

export const STATUS_HTTP = {
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 400,
  OUT_OF_RANGE: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  ABORTED: 409,
  RESOURCE_EXHAUSTED: 429,
  INTERNAL: 500,
  UNIMPLEMENTED: 501,
  UNAVAILABLE: 503,
} as const;
export type ApiStatus = keyof typeof STATUS_HTTP;

export class ApiError extends Error {
  readonly httpStatus: number;
  constructor(
    readonly status: ApiStatus,
    message: string,
    readonly details?: unknown[],
    /** Only where HTTP has a better word than the gRPC code's usual status (413). */
    httpStatus?: number,
  ) {
    super(message);
    this.name = 'ApiError';
    this.httpStatus = httpStatus ?? STATUS_HTTP[status];
  }

  toJSON(): { error: { code: number; status: ApiStatus; message: string; details?: unknown[] } } {
    return {
      error: {
        code: this.httpStatus,
        status: this.status,
        message: this.message,
        ...(this.details ? { details: this.details } : {}),
      },
    };
  }
}

export const invalid = (message: string, details?: unknown[]) =>
  new ApiError('INVALID_ARGUMENT', message, details);
export const notFound = (message: string) => new ApiError('NOT_FOUND', message);
export const precondition = (message: string) => new ApiError('FAILED_PRECONDITION', message);
export const tooLarge = (message: string) =>
  new ApiError('RESOURCE_EXHAUSTED', message, undefined, 413);

/** "learningRate: expected number, received string; epochs: ..." — every issue names its field. */
export function zodMessage(error: z.ZodError, root = 'body'): string {
  return error.issues
    .map((i) => {
      const path = i.path.length ? i.path.map(String).join('.') : root;
      if (i.code === 'unrecognized_keys') return `${path}: unknown field(s) ${i.keys.join(', ')}`;
      return `${path}: ${i.message}`;
    })
    .join('; ');
}

const STORE: Record<StoreError['code'], ApiStatus> = {
  already_exists: 'ALREADY_EXISTS',
  not_found: 'NOT_FOUND',
  conflict: 'ABORTED',
  invalid_argument: 'INVALID_ARGUMENT',
  failed_precondition: 'FAILED_PRECONDITION',
};

const ORCHESTRATION: Record<OrchestrationError['code'], ApiStatus> = {
  unimplemented: 'UNIMPLEMENTED',
  failed_precondition: 'FAILED_PRECONDITION',
  not_found: 'NOT_FOUND',
};

const CHECKPOINT: Record<CheckpointError['code'], ApiStatus> = {
  invalid_name: 'INVALID_ARGUMENT',
  invalid_argument: 'INVALID_ARGUMENT',
  not_found: 'NOT_FOUND',
  already_exists: 'ALREADY_EXISTS',
  corrupt: 'INTERNAL',
  incompatible: 'FAILED_PRECONDITION',
};

const DEPLOYMENT: Record<DeploymentError['code'], ApiStatus> = {
  invalid_argument: 'INVALID_ARGUMENT',
  not_found: 'NOT_FOUND',
  already_exists: 'ALREADY_EXISTS',
  failed_precondition: 'FAILED_PRECONDITION',
};

function fromFastify(err: FastifyError): ApiError | undefined {
  if (err.code === 'FST_REQ_FILE_TOO_LARGE' || err.statusCode === 413) return tooLarge(err.message);
  if (err.code?.startsWith('FST_') || err instanceof SyntaxError)
    return invalid(`malformed request: ${err.message}`);
  return undefined;
}

/** Maps anything thrown by a handler to the API error; unknown errors become INTERNAL. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof z.ZodError) return invalid(zodMessage(err));
  if (err instanceof StoreError) return new ApiError(STORE[err.code], err.message);
  if (err instanceof CheckpointError) return new ApiError(CHECKPOINT[err.code], err.message);
  if (err instanceof DeploymentError) return new ApiError(DEPLOYMENT[err.code], err.message);
  if (err instanceof LossError) return invalid(err.message);
  if (err instanceof OrchestrationError) return new ApiError(ORCHESTRATION[err.code], err.message);
  if (err instanceof DatasetValidationError)
    return invalid(
      err.message,
      err.issues.map((i) => ({ code: i.code, line: i.line ?? null, detail: i.detail })),
    );
  if (err instanceof ObjectStoreError && err.code === 'not_found') return notFound(err.message);
  if (err instanceof ObjectStoreError && err.code === 'unavailable')
    return new ApiError('UNAVAILABLE', err.message);
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') {
    const mapped = fromFastify(err as FastifyError);
    if (mapped) return mapped;
  }
  return new ApiError('INTERNAL', `internal error: ${(err as Error)?.message ?? String(err)}`);
}

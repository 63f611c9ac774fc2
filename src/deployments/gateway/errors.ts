// The gateway's one error type and the one shape every error leaves in: OpenAI's
// {"error": {"message", "type", "param", "code"}} (the openai client and the Fireworks SDK
// both read `error.message`; `code` keeps temper's stable string code).

export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    /** The request field at fault, where there is one (OpenAI's `param`). */
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}

/** OpenAI's error `type` for an HTTP status. */
export function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 425 || status === 429 || status === 503) return 'service_unavailable_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function errorBody(
  status: number,
  message: string,
  code: string | null,
  param: string | null = null,
): ErrorBody {
  return { error: { message, type: errorType(status), param, code } };
}

/** A 400 for a parameter the gateway knows but does not serve. */
export function unsupported(param: string, message: string): GatewayError {
  return new GatewayError(400, 'unsupported_parameter', message, {}, param);
}

export function invalid(param: string | null, message: string): GatewayError {
  return new GatewayError(400, 'invalid_argument', message, {}, param);
}

/**
 * A small typed client of the control plane's REST API (`/v1/accounts/{account}/...`): JSON
 * requests with the Bearer key, responses parsed with zod, and the API's one error shape
 * (`{"error": {code, status, message, details}}`) turned into an ApiRequestError that
 * carries the server's own message.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { z } from 'zod';
import type { Connection } from './connection.js';

export class ApiRequestError extends Error {
  constructor(
    message: string,
    /** HTTP status; 0 when the server could not be reached. */
    readonly httpStatus: number,
    /** gRPC code name (NOT_FOUND, INVALID_ARGUMENT, ...) or UNAVAILABLE. */
    readonly status: string,
    readonly details: unknown[] = [],
  ) {
    super(message);
    this.name = 'ApiRequestError';
  }
}

const errorBodySchema = z.object({
  error: z.object({
    code: z.number().optional(),
    status: z.string().optional(),
    message: z.string(),
    details: z.array(z.unknown()).optional(),
  }),
});

export type Query = Record<string, string | number | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  form?: FormData;
}

export class TemperApi {
  constructor(
    readonly connection: Connection,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  get account(): string {
    return this.connection.account;
  }

  /** `/v1/accounts/{account}/{collection}` of the connection's account. */
  collectionPath(collection: string): string {
    return `/v1/accounts/${this.account}/${collection}`;
  }

  async request<S extends z.ZodType>(
    method: string,
    path: string,
    schema: S,
    opts: RequestOptions = {},
  ): Promise<z.output<S>> {
    const json = await this.send(method, path, opts);
    const parsed = schema.safeParse(json);
    if (!parsed.success)
      throw new ApiRequestError(
        `unexpected response from ${method} ${path}: ${parsed.error.issues
          .map((i) => `${i.path.join('.') || 'body'}: ${i.message}`)
          .join('; ')}`,
        200,
        'INTERNAL',
      );
    return parsed.data;
  }

  /** A multipart upload of one file in field `file`. */
  async upload<S extends z.ZodType>(path: string, file: string, schema: S): Promise<z.output<S>> {
    const form = new FormData();
    const bytes = await readFile(file);
    form.append('file', new Blob([bytes], { type: 'application/jsonl' }), basename(file));
    return this.request('POST', path, schema, { form });
  }

  private url(path: string, query: Query = {}): string {
    const url = new URL(`${this.connection.apiUrl}${path}`);
    for (const [k, v] of Object.entries(query))
      if (v !== undefined) url.searchParams.set(k, String(v));
    return url.href;
  }

  private async send(method: string, path: string, opts: RequestOptions): Promise<unknown> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.connection.apiKey}` };
    let body: string | FormData | undefined;
    if (opts.form) body = opts.form;
    else if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    let res: Response;
    try {
      res = await this.fetchImpl(this.url(path, opts.query), { method, headers, body });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiRequestError(
        `cannot reach the control plane at ${this.connection.apiUrl} (${cause?.code ?? cause?.message ?? (err as Error).message}): is \`temper up\` running? (or set --api-url / TEMPER_API_URL)`,
        0,
        'UNAVAILABLE',
      );
    }
    const text = await res.text();
    const json = parseJson(text);
    if (res.ok) return json;
    const error = errorBodySchema.safeParse(json);
    if (!error.success)
      throw new ApiRequestError(
        `${method} ${path} failed with HTTP ${res.status}: ${text.slice(0, 200)}`,
        res.status,
        'UNKNOWN',
      );
    const e = error.data.error;
    throw new ApiRequestError(e.message, res.status, e.status ?? 'UNKNOWN', e.details ?? []);
  }
}

function parseJson(text: string): unknown {
  if (text === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    return { raw: text };
  }
}

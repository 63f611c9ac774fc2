// The replica's loopback HTTP face, used by the gateway:
//   POST /generate  (NDJSON stream of GenerateEvents; stream: false holds token events back and
//                    sends them in bunches; 425 during a SYNC swap or past the drain timeout)
//   POST /load      (start a hot-load; 202)        POST /hint  (prefetch one file)
//   POST /addons    (load a LoRA addon, multi-LoRA; 200 once it serves)
//   POST /addons/unload
//   GET  /status
//   GET  /metrics   (Prometheus text; see metrics.ts)
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { ServerMetrics } from '../../metrics/index.js';
import { BodyTooLargeError, readBodyLimited } from '../../util/http-body.js';
import { sameSecret } from '../gateway/auth.js';
import { REPLICA_ROUTES, replicaMetrics } from './metrics.js';
import type { ReplicaRuntime } from './runtime.js';
import { HotLoadError } from './snapshots.js';

export const generateBodySchema = z.object({
  prompt: z.array(z.number().int().nonnegative()).min(1),
  max_tokens: z.number().int().min(1),
  temperature: z.number().min(0).finite().default(1),
  top_p: z.number().gt(0).max(1).default(1),
  top_k: z.number().int().min(0).default(0),
  seed: z.number().int().nonnegative().optional(),
  stop_tokens: z.array(z.number().int().nonnegative()).default([]),
  top_logprobs: z.number().int().min(0).max(20).default(0),
  echo: z.boolean().default(false),
  session_id: z.string().optional(),
  /** A LoRA addon loaded with POST /addons (multi-LoRA); absent: the served snapshot. */
  adapter: z.string().min(1).optional(),
  drain_timeout_s: z.number().positive().optional(),
  /**
   * true (default): one NDJSON line goes out per event as it happens. false: token events are
   * held and sent together (at the end, or once a second in a long generation), for a caller
   * that has no use for them earlier: a socket write per token is a syscall, and a wake-up of
   * the reader, on the thread that runs the decoder.
   */
  stream: z.boolean().default(true),
});

const incrementalSchema = z.object({
  previous_snapshot_identity: z.string().min(1),
  compression_format: z.literal('arc_v2'),
  checksum_format: z.literal('alder32'),
});

export const loadBodySchema = z.object({
  identity: z.string().min(1),
  incremental_snapshot_metadata: incrementalSchema.optional(),
  /**
   * hot-load.md names the modes; the Fireworks SDK sends a boolean (true: drop the prompt
   * cache, i.e. 'all'; false: keep it, 'none').
   */
  reset_prompt_cache: z
    .union([
      z.enum(['all', 'none', 'new_session']),
      z.boolean().transform((reset) => (reset ? ('all' as const) : ('none' as const))),
    ])
    .default('all'),
  validation: z.object({ extra_fields_ignore: z.array(z.string()).optional() }).optional(),
});

/** A LoRA addon: the name requests use, and the adapter snapshot in the hot-load bucket. */
export const addonBodySchema = z.object({
  name: z.string().min(1).max(256),
  identity: z.string().min(1),
});
export const addonUnloadBodySchema = z.object({ name: z.string().min(1).max(256) });

export const hintBodySchema = z.object({
  snapshot: z.object({
    identity: z.string().min(1),
    incremental_snapshot_metadata: incrementalSchema.optional(),
  }),
  filename: z.string().min(1),
});

export async function readJson(req: IncomingMessage): Promise<unknown> {
  let bytes: Buffer;
  try {
    bytes = await readBodyLimited(req);
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw new HotLoadError('payload_too_large', err.message);
    throw err;
  }
  const text = bytes.toString('utf8');
  if (text.length === 0) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new HotLoadError('invalid_argument', 'request body is not valid JSON');
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

export function zodMessage(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
}

export function errorStatus(err: unknown): number {
  if (err instanceof HotLoadError)
    return err.code === 'too_early'
      ? 425
      : err.code === 'not_found'
        ? 404
        : err.code === 'payload_too_large'
          ? 413
          : err.code === 'unauthenticated'
            ? 401
            : 400;
  return 500;
}

/** With stream: false, held events still go out at least this often (milliseconds). */
const HOLD_MS = 1000;

/**
 * Serves the replica on `host:port`. With `token` (the launcher's TEMPER_REPLICA_TOKEN) every
 * call must carry `Authorization: Bearer <token>`: only its gateway reaches it.
 */
export function startReplicaServer(
  rt: ReplicaRuntime,
  port = 0,
  host = '127.0.0.1',
  token?: string,
): Promise<Server> {
  const metrics = replicaMetrics(rt);
  const server = createServer((req, res) => {
    const route = REPLICA_ROUTES.has(req.url ?? '') ? (req.url as string) : 'unmatched';
    metrics.track(req, res, () => route);
    const allowed =
      token === undefined || sameSecret(req.headers.authorization ?? '', `Bearer ${token}`);
    const served = allowed
      ? handle(rt, req, res, metrics)
      : Promise.reject(
          new HotLoadError('unauthenticated', 'this replica answers its gateway only'),
        );
    void served.catch((err: unknown) => {
      if (!res.headersSent)
        sendJson(res, errorStatus(err), {
          error: {
            code: (err as HotLoadError).code ?? 'internal',
            message: (err as Error).message,
          },
        });
      else res.end();
    });
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
}

export function serverPort(s: Server): number {
  return (s.address() as AddressInfo).port;
}

async function handle(
  rt: ReplicaRuntime,
  req: IncomingMessage,
  res: ServerResponse,
  metrics: ServerMetrics,
): Promise<void> {
  const url = req.url ?? '/';
  if (req.method === 'GET' && url === '/status') return sendJson(res, 200, rt.status());
  if (req.method === 'GET' && url === '/metrics') {
    const { body, contentType } = await metrics.render();
    res.writeHead(200, { 'content-type': contentType });
    res.end(body);
    return;
  }
  if (req.method === 'POST' && url === '/load') {
    const p = loadBodySchema.safeParse(await readJson(req));
    if (!p.success) throw new HotLoadError('invalid_argument', zodMessage(p.error));
    return sendJson(res, 202, rt.signal(p.data));
  }
  if (req.method === 'POST' && url === '/addons') {
    const p = addonBodySchema.safeParse(await readJson(req));
    if (!p.success) throw new HotLoadError('invalid_argument', zodMessage(p.error));
    await rt.loadAddon(p.data.name, p.data.identity);
    return sendJson(res, 200, p.data);
  }
  if (req.method === 'POST' && url === '/addons/unload') {
    const p = addonUnloadBodySchema.safeParse(await readJson(req));
    if (!p.success) throw new HotLoadError('invalid_argument', zodMessage(p.error));
    if (!rt.unloadAddon(p.data.name))
      throw new HotLoadError('not_found', `LoRA addon '${p.data.name}' is not loaded`);
    return sendJson(res, 200, {});
  }
  if (req.method === 'POST' && url === '/hint') {
    const p = hintBodySchema.safeParse(await readJson(req));
    if (!p.success) throw new HotLoadError('invalid_argument', zodMessage(p.error));
    rt.hint(p.data.snapshot.identity, p.data.filename);
    return sendJson(res, 200, {});
  }
  if (req.method === 'POST' && url === '/generate') {
    const p = generateBodySchema.safeParse(await readJson(req));
    if (!p.success) throw new HotLoadError('invalid_argument', zodMessage(p.error));
    const b = p.data;
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    // events not yet written (stream: false), and when something last went out
    let held = '';
    let wrote = performance.now();
    try {
      await rt.generate(
        {
          prompt: b.prompt,
          maxTokens: b.max_tokens,
          temperature: b.temperature,
          topP: b.top_p,
          topK: b.top_k,
          seed: b.seed,
          stopTokens: b.stop_tokens,
          topLogprobs: b.top_logprobs,
          echo: b.echo,
          sessionId: b.session_id,
          adapter: b.adapter,
          drainTimeoutMs: b.drain_timeout_s !== undefined ? b.drain_timeout_s * 1000 : undefined,
        },
        (e) => {
          if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          const line = `${JSON.stringify(e)}\n`;
          // the prompt event goes out at once (headers with it), and held tokens at least
          // every HOLD_MS, so a long generation never looks like a stalled response
          if (b.stream || e.type === 'prompt') res.write(line);
          else {
            held += line;
            if (performance.now() - wrote < HOLD_MS) return;
            res.write(held);
            held = '';
          }
          wrote = performance.now();
        },
        abort.signal,
      );
    } finally {
      // what was generated before a failure still goes out
      if (held) res.write(held);
    }
    res.end();
    return;
  }
  sendJson(res, 404, { error: { code: 'not_found', message: `no route ${req.method} ${url}` } });
}

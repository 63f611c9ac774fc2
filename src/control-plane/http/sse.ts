/**
 * A server-sent-events response taken over from Fastify (hijacked: the handler writes the
 * stream itself and ends it). Used by the job views that follow a job (`events`, `logs`).
 */
import type { RequestCtx } from './router.js';

export interface SseStream {
  /** Sends one event (nothing once the client has gone). */
  send(event: string, data: unknown): void;
  /** A comment line that keeps proxies from timing the stream out. */
  beat(): void;
  /** True once the client went away or the server stopped listening (`temper down`). */
  readonly done: boolean;
  end(): void;
}

export function openSse(ctx: RequestCtx): SseStream {
  ctx.reply.hijack();
  const out = ctx.reply.raw;
  out.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  let closed = false;
  out.on('close', () => {
    closed = true;
  });
  return {
    send(event, data) {
      if (!closed) out.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    beat() {
      if (!closed) out.write(': keep-alive\n\n');
    },
    get done() {
      // A closing server ends its streams so close() need not wait for jobs to end.
      return closed || !ctx.req.server.server.listening;
    },
    end() {
      out.end();
    },
  };
}

/**
 * Remote environments (`--remote-server-url`): the rollout runs on the user's server. For each
 * rollout the platform calls `POST {remoteServerUrl}/init` with the row's messages and tools,
 * the completion parameters, correlation metadata and a `model_base_url`; the user's agent
 * makes its model calls through that URL (OpenAI-compatible chat completions) and reports the
 * end with `POST {model_base_url}/status` `{status: "finished" | "error", message?}`.
 *
 * `model_base_url` points at this worker host's tracer, which forwards each call to the job's
 * rollout deployment (the weights being trained) and records what was sampled — tokens and
 * inference logprobs — as the rollout's trace; the last call of a finished rollout is what the
 * evaluator scores and the policy trains on. (The reference platform joins logs and traces by
 * rollout id through its tracing service; here the status call is that signal.)
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';

export interface TracedCall {
  messages: unknown[];
  promptTokens: number[];
  completionTokens: number[];
  logprobs: number[];
  text: string;
  snapshot: string | null;
}

export interface RemoteRolloutResult {
  status: 'finished' | 'error' | 'timeout';
  message: string;
  calls: TracedCall[];
}

export interface RemoteRolloutRequest {
  remoteServerUrl: string;
  /** Gateway of the deployment serving the current weights. */
  gatewayUrl: string;
  rolloutId: string;
  metadata: { invocation_id: string; experiment_id: string; run_id: string; row_id: string };
  messages: unknown[];
  tools: unknown[] | undefined;
  completionParams: {
    model: string;
    temperature: number;
    max_tokens: number;
    top_p: number;
    top_k: number;
  };
  timeoutMs: number;
}

interface Live {
  gatewayUrl: string;
  calls: TracedCall[];
  finish: (status: 'finished' | 'error', message: string) => void;
}

const chatResponse = z
  .object({
    prompt_token_ids: z.array(z.number().int()),
    snapshot_identity: z.string().nullable().optional(),
    choices: z
      .array(
        z
          .object({
            message: z.object({ content: z.string() }).passthrough(),
            token_ids: z.array(z.number().int()),
            logprobs: z
              .object({ content: z.array(z.object({ logprob: z.number() }).passthrough()) })
              .nullable(),
          })
          .passthrough(),
      )
      .min(1),
  })
  .passthrough();

const statusBody = z.object({
  status: z.enum(['finished', 'error']),
  message: z.string().optional(),
});

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

function reply(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

export class RolloutTracer {
  private readonly live = new Map<string, Live>();

  private constructor(
    private readonly server: Server,
    private readonly origin: string,
  ) {}

  /** Starts the tracer on `host` (the address remote servers reach this worker at). */
  static async start(host = '127.0.0.1'): Promise<RolloutTracer> {
    let tracer: RolloutTracer | undefined;
    const server = createServer((req, res) => {
      tracer!
        .handle(req, res)
        .catch((error: Error) => reply(res, 500, { error: { message: error.message } }));
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    const { port } = server.address() as AddressInfo;
    tracer = new RolloutTracer(server, `http://${host}:${port}`);
    return tracer;
  }

  modelBaseUrl(rolloutId: string): string {
    return `${this.origin}/rollouts/${rolloutId}/v1`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const m = /^\/rollouts\/([A-Za-z0-9._-]+)\/v1\/(chat\/completions|status)$/.exec(req.url ?? '');
    const live = m ? this.live.get(m[1]!) : undefined;
    if (!m || req.method !== 'POST') return reply(res, 404, { error: { message: 'not found' } });
    if (!live) return reply(res, 404, { error: { message: `rollout ${m[1]} is not running` } });
    const body = await readJson(req);
    if (m[2] === 'status') {
      const parsed = statusBody.safeParse(body);
      if (!parsed.success)
        return reply(res, 400, {
          error: { message: 'status must be {"status": "finished" | "error", "message"?}' },
        });
      live.finish(parsed.data.status, parsed.data.message ?? '');
      return reply(res, 200, {});
    }
    return this.forwardChat(live, body as Record<string, unknown>, res);
  }

  /** Forwards a chat completion to the deployment with logprobs on, and records it. */
  private async forwardChat(live: Live, body: Record<string, unknown>, res: ServerResponse) {
    const upstream = await fetch(`${live.gatewayUrl}/inference/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, n: 1, stream: false, logprobs: true }),
    });
    const payload = (await upstream.json()) as unknown;
    if (upstream.ok) {
      const parsed = chatResponse.safeParse(payload);
      if (parsed.success) {
        const choice = parsed.data.choices[0]!;
        live.calls.push({
          messages: Array.isArray(body.messages) ? body.messages : [],
          promptTokens: parsed.data.prompt_token_ids,
          completionTokens: choice.token_ids,
          logprobs: choice.logprobs?.content.map((c) => c.logprob) ?? [],
          text: choice.message.content,
          snapshot: parsed.data.snapshot_identity ?? null,
        });
      }
    }
    reply(res, upstream.status, payload);
  }

  /** One remote rollout: /init, then wait for its status call (or the timeout). */
  async run(r: RemoteRolloutRequest): Promise<RemoteRolloutResult> {
    const calls: TracedCall[] = [];
    let timer: NodeJS.Timeout | undefined;
    const ended = new Promise<RemoteRolloutResult>((resolve) => {
      this.live.set(r.rolloutId, {
        gatewayUrl: r.gatewayUrl,
        calls,
        finish: (status, message) => resolve({ status, message, calls }),
      });
      timer = setTimeout(
        () =>
          resolve({
            status: 'timeout',
            message: `rollout timed out after ${r.timeoutMs} ms`,
            calls,
          }),
        r.timeoutMs,
      );
    });
    try {
      const init = await fetch(`${r.remoteServerUrl.replace(/\/+$/, '')}/init`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          completion_params: r.completionParams,
          messages: r.messages,
          tools: r.tools ?? [],
          model_base_url: this.modelBaseUrl(r.rolloutId),
          metadata: { ...r.metadata, rollout_id: r.rolloutId },
          api_key: '',
        }),
      }).catch((error: Error) => error);
      if (init instanceof Error || !init.ok) {
        const why = init instanceof Error ? init.message : `HTTP ${init.status}`;
        return { status: 'error', message: `remote server /init failed: ${why}`, calls };
      }
      return await ended;
    } finally {
      clearTimeout(timer);
      this.live.delete(r.rolloutId);
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * Remote environments (`remoteServerUrl`), as eval-protocol defines them: for each rollout the
 * platform calls `POST {remoteServerUrl}/init` with eval-protocol's InitRequest (the row's
 * messages and tools, `completion_params`, `metadata` {invocation_id, experiment_id,
 * rollout_id, run_id, row_id}, `model_base_url` and `api_key`). The user's agent makes its
 * model calls through `model_base_url` (OpenAI-compatible: `{model_base_url}/chat/completions`)
 * with `api_key`, and reports the end the way eval-protocol's `FireworksTracingHttpHandler`
 * does: a log record tagged `rollout_id:<id>` whose status is terminal (Status.rollout_finished()
 * = code 100, or an error code), POSTed to `{FW_TRACING_GATEWAY_BASE_URL}/logs` — the control
 * plane's origin here, which keeps the record in the artifact store under the key's account
 * (src/control-plane/resources/rollout-logs.ts; the layout is src/store/rollout-logs.ts). This host polls there for it.
 *
 * `model_base_url` is this host's tracer, in the path layout of eval-protocol's tracing
 * gateway (`/rollout_id/{id}/invocation_id/{id}/experiment_id/{id}/run_id/{id}/row_id/{id}`).
 * The tracer forwards each call to the job's rollout deployment (the weights being trained)
 * and records what was sampled — tokens and inference logprobs — as the rollout's trace; the
 * last call of a finished rollout is what the evaluator scores and the policy trains on.
 * `api_key` is a token made for the one rollout: it opens that rollout's model URL and nothing
 * else (no account key leaves the platform).
 */

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { ObjectStore } from '../../checkpoints/object-store/index.js';
import { isStatusRecordKey, rolloutLogPrefix, rolloutLogRecordSchema } from '../../store/index.js';
import { readBodyLimited } from '../../util/http-body.js';
import { type OutboundSettings, outboundRequest } from '../../util/outbound.js';

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

export interface RolloutMetadata {
  invocation_id: string;
  experiment_id: string;
  run_id: string;
  row_id: string;
}

export interface RemoteRolloutRequest {
  remoteServerUrl: string;
  /** Gateway of the deployment serving the current weights. */
  gatewayUrl: string;
  /** The credential that gateway takes (the deployment's access token, as headers). */
  gatewayHeaders: Record<string, string>;
  /** The job's account: its log records are kept there. */
  account: string;
  /** Unique among the account's rollouts, ever (a retried step makes new ones). */
  rolloutId: string;
  metadata: RolloutMetadata;
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

/** eval-protocol's Status.Code: RUNNING goes on; FINISHED (and OK) end well; the rest fail. */
const RUNNING = 101;
const FINISHED = new Set([100, 0]);

interface Live {
  gatewayUrl: string;
  gatewayHeaders: Record<string, string>;
  token: Buffer;
  calls: TracedCall[];
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

async function readJson(req: IncomingMessage): Promise<unknown> {
  return JSON.parse((await readBodyLimited(req)).toString('utf8') || '{}');
}

function reply(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The rollout id of a traced model URL, or null when the path is not one. */
function rolloutOfPath(url: string): string | null {
  const parts = (url.split('?')[0] ?? '').split('/').slice(1);
  if (parts[0] !== 'rollout_id' || parts.length < 4) return null;
  if (parts.at(-2) !== 'chat' || parts.at(-1) !== 'completions') return null;
  try {
    return decodeURIComponent(parts[1]!);
  } catch {
    return null;
  }
}

export class RolloutTracer {
  private readonly live = new Map<string, Live>();

  private constructor(
    private readonly server: Server,
    private readonly origin: string,
    private readonly logs: ObjectStore,
    private readonly pollMs: number,
    private readonly outbound: OutboundSettings,
  ) {}

  /**
   * Starts the tracer on `host` (the address remote servers reach this worker at); rollout
   * ends are read from `logs` (the artifact store the control plane keeps log records in).
   */
  static async start(
    host: string | undefined,
    logs: ObjectStore,
    opts: { pollMs?: number; outbound?: OutboundSettings } = {},
  ): Promise<RolloutTracer> {
    let tracer: RolloutTracer | undefined;
    const server = createServer((req, res) => {
      tracer!
        .handle(req, res)
        .catch((error: Error) => reply(res, 500, { error: { message: error.message } }));
    });
    const bind = host ?? '127.0.0.1';
    await new Promise<void>((resolve) => server.listen(0, bind, resolve));
    const { port } = server.address() as AddressInfo;
    const origin = `http://${bind.includes(':') ? `[${bind}]` : bind}:${port}`;
    tracer = new RolloutTracer(
      server,
      origin,
      logs,
      opts.pollMs ?? 250,
      opts.outbound ?? { allowPrivateNetworks: false },
    );
    return tracer;
  }

  /** eval-protocol's tracing URL layout, on this host. */
  modelBaseUrl(rolloutId: string, m: RolloutMetadata): string {
    const seg = (k: string, v: string) => `/${k}/${encodeURIComponent(v)}`;
    return (
      this.origin +
      seg('rollout_id', rolloutId) +
      seg('invocation_id', m.invocation_id) +
      seg('experiment_id', m.experiment_id) +
      seg('run_id', m.run_id) +
      seg('row_id', m.row_id)
    );
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const rolloutId = rolloutOfPath(req.url ?? '');
    if (rolloutId === null || req.method !== 'POST')
      return reply(res, 404, {
        error: { message: 'not found: POST {model_base_url}/chat/completions' },
      });
    const live = this.live.get(rolloutId);
    if (!live)
      return reply(res, 404, { error: { message: `rollout ${rolloutId} is not running` } });
    const given = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const presented = Buffer.from(given);
    if (presented.length !== live.token.length || !timingSafeEqual(presented, live.token))
      return reply(res, 401, {
        error: { message: 'use the api_key /init gave for this rollout as the Bearer key' },
      });
    return this.forwardChat(live, (await readJson(req)) as Record<string, unknown>, res);
  }

  /** Forwards a chat completion to the deployment with logprobs on, and records it. */
  private async forwardChat(live: Live, body: Record<string, unknown>, res: ServerResponse) {
    const upstream = await fetch(`${live.gatewayUrl}/inference/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...live.gatewayHeaders },
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

  /** The first terminal status among the rollout's log records, polled until the deadline. */
  private async awaitEnd(
    prefix: string,
    deadline: number,
  ): Promise<{ status: 'finished' | 'error' | 'timeout'; message: string }> {
    const seen = new Set<string>();
    for (;;) {
      for (const o of await this.logs.list(prefix)) {
        if (seen.has(o.key) || !isStatusRecordKey(o.key)) continue;
        seen.add(o.key);
        const record = rolloutLogRecordSchema.safeParse(
          JSON.parse((await this.logs.get(o.key)).toString('utf8')),
        );
        const status = record.success ? record.data.status : null;
        if (!status || status.code === RUNNING) continue;
        const message = status.message || record.data?.message || '';
        if (FINISHED.has(status.code)) return { status: 'finished', message };
        return {
          status: 'error',
          message: message || `rollout ended with status code ${status.code}`,
        };
      }
      if (Date.now() >= deadline) return { status: 'timeout', message: '' };
      await sleep(Math.min(this.pollMs, Math.max(0, deadline - Date.now())));
    }
  }

  /** One remote rollout: /init, then wait for its terminal log record (or the timeout). */
  async run(r: RemoteRolloutRequest): Promise<RemoteRolloutResult> {
    const calls: TracedCall[] = [];
    const token = randomBytes(24).toString('base64url');
    const prefix = rolloutLogPrefix(r.account, r.rolloutId);
    const deadline = Date.now() + r.timeoutMs;
    this.live.set(r.rolloutId, {
      gatewayUrl: r.gatewayUrl,
      gatewayHeaders: r.gatewayHeaders,
      token: Buffer.from(token),
      calls,
    });
    try {
      // the user's URL: private networks refused at connect time (util/outbound.ts)
      const init = await outboundRequest(
        `${r.remoteServerUrl.replace(/\/+$/, '')}/init`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            completion_params: r.completionParams,
            messages: r.messages,
            tools: r.tools ?? null,
            model_base_url: this.modelBaseUrl(r.rolloutId, r.metadata),
            metadata: { ...r.metadata, rollout_id: r.rolloutId },
            api_key: token,
          }),
          signal: AbortSignal.timeout(r.timeoutMs),
        },
        this.outbound,
      ).catch((error: Error) => error);
      if (init instanceof Error || !init.ok) {
        const why =
          init instanceof Error
            ? init.message
            : `HTTP ${init.status}: ${(await init.text()).slice(0, 500)}`;
        return { status: 'error', message: `remote server /init failed: ${why}`, calls };
      }
      const end = await this.awaitEnd(prefix, deadline);
      return {
        ...end,
        message:
          end.status === 'timeout'
            ? `rollout ${r.rolloutId} timed out after ${r.timeoutMs} ms without a finished or error status in its logs`
            : end.message,
        calls,
      };
    } finally {
      this.live.delete(r.rolloutId);
      for (const o of await this.logs.list(prefix).catch(() => []))
        await this.logs.delete(o.key).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// The deployment gateway: OpenAI-compatible completions over the replicas (session affinity,
// n fan-out, stop strings, logprobs, echo, SSE), and the hot-load API with its ledger.
import { createHash, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { z } from 'zod';
import { type ObjectStore, openObjectStore } from '../../checkpoints/object-store/index.js';
import { getRenderer, type Renderer, type Tokenizer } from '../../tokenizers/index.js';
import { loadModelTokenizer, modelRendererName } from '../../tokenizers/model-files.js';
import { type Logger, silentLogger } from '../log.js';
import type { GenerateEvent, ReplicaStatus, TransitionType } from '../replica/runtime.js';
import {
  hintBodySchema,
  loadBodySchema,
  readJson,
  sendJson,
  zodMessage,
} from '../replica/server.js';
import {
  checkIdentity,
  HotLoadError,
  parseJsonObject,
  validateSnapshotConfig,
} from '../replica/snapshots.js';
import { Ledger } from './ledger.js';

export interface GatewayReplica {
  id: string;
  url: string;
}

export interface GatewayOptions {
  account: string;
  deploymentId: string;
  /** accounts/{a}/models/{m} of the base model. */
  model: string;
  baseModelDir: string;
  bucketUrl: string;
  transition: TransitionType;
  replicas: GatewayReplica[];
  /** When set, every call must carry `Authorization: Bearer <apiKey>`. */
  apiKey?: string | undefined;
  logger?: Logger;
}

export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}

const stopSchema = z.union([z.string(), z.array(z.string()).max(8)]).optional();
const commonSchema = {
  model: z.string().optional(),
  max_tokens: z.number().int().min(1).optional(),
  temperature: z.number().min(0).max(2).default(1),
  top_p: z.number().gt(0).max(1).default(1),
  top_k: z.number().int().min(0).default(0),
  n: z.number().int().min(1).max(128).default(1),
  seed: z.number().int().nonnegative().optional(),
  stop: stopSchema.nullable(),
  stream: z.boolean().default(false),
  user: z.string().optional(),
  echo: z.boolean().default(false),
  /** Keep sampling past the end-of-text token (benchmarks, long streams). */
  ignore_eos: z.boolean().default(false),
};
export const completionsBodySchema = z.object({
  ...commonSchema,
  prompt: z.union([z.string(), z.array(z.number().int().nonnegative()).min(1)]),
  logprobs: z
    .union([z.boolean(), z.number().int().min(0).max(20)])
    .nullable()
    .optional(),
  top_logprobs: z.number().int().min(0).max(20).optional(),
});
export const chatBodySchema = z.object({
  ...commonSchema,
  messages: z.array(z.object({ role: z.string(), content: z.string() }).passthrough()).min(1),
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: z.number().int().min(0).max(20).optional(),
});

interface Choice {
  index: number;
  tokens: number[];
  logprobs: number[];
  top: { token: number; logprob: number }[][];
  text: string;
  finishReason: 'stop' | 'length';
  snapshot: string | null;
  promptLogprobs: (number | null)[] | null;
  cachedTokens: number;
  prefillQueueMs: number;
  prefillMs: number;
  decodeMs: number;
  replicaId: string;
}

/** Longest suffix of `text` that is a proper prefix of a stop string (held back while streaming). */
function heldBack(text: string, stops: string[]): number {
  let hold = 0;
  for (const s of stops)
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--)
      if (text.endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
  return hold;
}

export class Gateway {
  readonly opts: GatewayOptions;
  readonly ledger = new Ledger();
  private readonly log: Logger;
  private replicas: GatewayReplica[];
  private rr = 0;
  private server: Server | null = null;
  private constructor(
    opts: GatewayOptions,
    private readonly tokenizer: Tokenizer,
    private readonly renderer: Renderer,
    private readonly baseConfig: Record<string, unknown>,
    private readonly store: ObjectStore,
  ) {
    this.opts = opts;
    this.replicas = [...opts.replicas];
    this.log = opts.logger ?? silentLogger();
  }

  static async create(opts: GatewayOptions): Promise<Gateway> {
    const tokenizer = await loadModelTokenizer(opts.baseModelDir);
    const renderer = getRenderer(await modelRendererName(opts.baseModelDir), tokenizer);
    const baseConfig = parseJsonObject(
      await readFile(join(opts.baseModelDir, 'config.json')),
      'base config.json',
    );
    return new Gateway(
      opts,
      tokenizer,
      renderer,
      baseConfig,
      await openObjectStore(opts.bucketUrl),
    );
  }

  setReplicas(replicas: GatewayReplica[]): void {
    this.replicas = [...replicas];
  }

  /** Snapshots signalled while the deployment had no replicas (loaded on scale-up). */
  private readonly pendingAtZero = new Set<string>();
  /** Signal bodies by identity (to replay a delta chain onto a new replica). */
  private readonly signals = new Map<string, z.infer<typeof loadBodySchema>>();

  /**
   * Brings a new replica to what the deployment serves: replays the chain from the last full
   * snapshot through its deltas, and waits until the replica serves the newest one.
   */
  async catchUp(replica: GatewayReplica, timeoutMs = 120_000): Promise<string | null> {
    this.ledger.update(await this.statuses());
    const rows = this.ledger.list();
    // the newest good snapshot some replica served, or one signalled while at zero replicas
    const latest = rows.find(
      (r) =>
        r.load_error === null &&
        (this.pendingAtZero.has(r.identity) ||
          r.replicas.some((x) => x.readiness_transitions.some((t) => t.readiness))),
    );
    if (!latest) return null;
    const chain: string[] = [];
    let row: (typeof rows)[number] | undefined = latest;
    while (row) {
      chain.unshift(row.identity);
      if (row.snapshot_type === 'full') break;
      const prev: string | null = row.previous_snapshot_identity;
      row = rows.find((r) => r.identity === prev && r.load_error === null);
    }
    for (const id of chain) {
      const body = this.signals.get(id) ?? { identity: id, reset_prompt_cache: 'all' as const };
      const out = await fetch(`${replica.url}/load`, {
        method: 'POST',
        body: JSON.stringify(body),
      });
      if (!out.ok)
        throw new GatewayError(502, 'replica_error', `${replica.id}: ${await out.text()}`);
    }
    const t0 = Date.now();
    for (;;) {
      const s = (await (await fetch(`${replica.url}/status`)).json()) as ReplicaStatus;
      if (s.current_snapshot_identity === latest.identity && s.loading_state.stage === 'ready')
        return latest.identity;
      if (s.loading_state.stage === 'error')
        throw new GatewayError(
          502,
          'replica_error',
          `${replica.id} failed to catch up to ${latest.identity}: ${s.loading_state.error}`,
        );
      if (Date.now() - t0 > timeoutMs)
        throw new GatewayError(
          504,
          'deadline_exceeded',
          `${replica.id} did not catch up to ${latest.identity}`,
        );
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  get deploymentName(): string {
    return `accounts/${this.opts.account}/deployments/${this.opts.deploymentId}`;
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<string> {
    this.server = createServer((req, res) => {
      void this.handle(req, res).catch((err: unknown) => this.fail(res, err));
    });
    await new Promise<void>((r) => this.server?.listen(port, host, () => r()));
    const addr = this.server.address();
    return `http://${host}:${typeof addr === 'object' && addr ? addr.port : port}`;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private fail(res: ServerResponse, err: unknown): void {
    if (res.headersSent) {
      if (res.getHeader('content-type') === 'text/event-stream')
        res.end(`data: ${JSON.stringify({ error: { message: (err as Error).message } })}\n\n`);
      else res.end();
      return;
    }
    if (err instanceof GatewayError) {
      sendJson(res, err.status, { error: { code: err.code, message: err.message } }, err.headers);
      return;
    }
    if (err instanceof HotLoadError) {
      const status = err.code === 'too_early' ? 425 : err.code === 'not_found' ? 404 : 400;
      sendJson(res, status, { error: { code: err.code, message: err.message } });
      return;
    }
    sendJson(res, 500, { error: { code: 'internal', message: (err as Error).message } });
  }

  private checkHeaders(req: IncomingMessage): void {
    if (
      this.opts.apiKey !== undefined &&
      req.headers.authorization !== `Bearer ${this.opts.apiKey}`
    )
      throw new GatewayError(
        401,
        'unauthenticated',
        'missing or wrong Authorization: Bearer <api key>',
      );
    const dep = req.headers['fireworks-deployment'];
    if (typeof dep === 'string' && dep !== this.deploymentName)
      throw new GatewayError(
        404,
        'not_found',
        `this gateway serves ${this.deploymentName}, not ${dep}`,
      );
    const model = req.headers['fireworks-model'];
    if (typeof model === 'string' && model !== this.opts.model)
      throw new GatewayError(
        404,
        'not_found',
        `this deployment serves ${this.opts.model}, not ${model}`,
      );
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] as string;
    this.checkHeaders(req);
    const ledgerPath = `/v1/${this.deploymentName}/ledger`;
    if (req.method === 'POST' && path === '/inference/v1/completions')
      return this.completions(req, res, false);
    if (req.method === 'POST' && path === '/inference/v1/chat/completions')
      return this.completions(req, res, true);
    if (path === '/hot_load/v1/models/hot_load' && req.method === 'POST')
      return this.signal(req, res);
    if (path === '/hot_load/v1/models/hot_load' && req.method === 'GET')
      return sendJson(res, 200, { replicas: (await this.statuses()).map(publicStatus) });
    if (path === '/hot_load/v1/models/hot_load/hint' && req.method === 'POST')
      return this.hint(req, res);
    if (path === ledgerPath && req.method === 'GET') {
      this.ledger.update(await this.statuses());
      return sendJson(res, 200, { deployment: this.deploymentName, snapshots: this.ledger.list() });
    }
    if (path === ledgerPath && req.method === 'DELETE')
      return sendJson(res, 200, { deployment: this.deploymentName, removed: this.ledger.reset() });
    throw new GatewayError(404, 'not_found', `no route ${req.method} ${path}`);
  }

  // ---------------------------------------------------------------------------------------
  // Hot-load
  // ---------------------------------------------------------------------------------------

  async statuses(): Promise<ReplicaStatus[]> {
    return Promise.all(
      this.replicas.map(async (r): Promise<ReplicaStatus> => {
        try {
          const res = await fetch(`${r.url}/status`);
          return (await res.json()) as ReplicaStatus;
        } catch (err) {
          // an unreachable replica is reported, not fatal to the status call
          return {
            replica_id: r.id,
            readiness: false,
            current_snapshot_identity: null,
            loading_state: { stage: 'unreachable', identity: null, error: (err as Error).message },
            loads: [],
            prefix_cache: { entries: 0, hits: 0, lookups: 0 },
            decode_batches: { batches: 0, steps: 0 },
            inflight: 0,
            generated_tokens: 0,
          };
        }
      }),
    );
  }

  private async signal(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const p = loadBodySchema.safeParse(await readJson(req));
    if (!p.success) throw new GatewayError(400, 'invalid_argument', zodMessage(p.error));
    const body = p.data;
    checkIdentity(body.identity);
    const inc = body.incremental_snapshot_metadata;
    if (inc && !this.ledger.has(inc.previous_snapshot_identity))
      throw new GatewayError(
        400,
        'failed_precondition',
        `previous_snapshot_identity '${inc.previous_snapshot_identity}' is not in the ledger of ${this.deploymentName} (never loaded, failed, or the ledger was reset): signal a full snapshot`,
      );
    const row = {
      identity: body.identity,
      snapshot_type: inc ? ('delta' as const) : ('full' as const),
      previous_snapshot_identity: inc?.previous_snapshot_identity ?? null,
      signal_time: new Date().toISOString(),
      load_error: null as string | null,
    };
    let cfg: Buffer | null;
    try {
      cfg = await this.store.get(`${body.identity}/config.json`);
    } catch {
      cfg = null;
    }
    // a LoRA adapter snapshot (PEFT layout) has no config.json; it merges onto the base
    const isAdapter =
      cfg === null &&
      !inc &&
      (await this.store.stat(`${body.identity}/adapter_config.json`)) !== null;
    if (cfg === null && !isAdapter) {
      this.ledger.add({ ...row, load_error: 'config.json not found' });
      throw new GatewayError(
        404,
        'not_found',
        `${this.store.url}/${body.identity}/config.json does not exist: upload the snapshot before signalling it`,
      );
    }
    const problem = cfg
      ? validateSnapshotConfig(
          this.baseConfig,
          parseJsonObject(cfg, `${body.identity}/config.json`),
          body.validation?.extra_fields_ignore ?? [],
        )
      : null;
    if (problem) {
      this.log.warn({ identity: body.identity, problem }, 'snapshot config refused');
      this.ledger.add({ ...row, load_error: problem });
      throw new GatewayError(400, 'config_validation', problem);
    }
    this.ledger.add(row);
    this.signals.set(body.identity, body);
    if (this.replicas.length === 0) this.pendingAtZero.add(body.identity);
    this.log.info(
      {
        identity: body.identity,
        type: row.snapshot_type,
        previous: row.previous_snapshot_identity,
      },
      'hot-load signalled',
    );
    await Promise.all(
      this.replicas.map(async (r) => {
        const out = await fetch(`${r.url}/load`, { method: 'POST', body: JSON.stringify(body) });
        if (!out.ok) throw new GatewayError(502, 'replica_error', `${r.id}: ${await out.text()}`);
      }),
    );
    sendJson(res, 200, {
      identity: body.identity,
      snapshot_type: row.snapshot_type,
      transition_type: this.opts.transition,
      replicas: this.replicas.map((r) => r.id),
    });
  }

  private async hint(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const p = hintBodySchema.safeParse(await readJson(req));
    if (!p.success) throw new GatewayError(400, 'invalid_argument', zodMessage(p.error));
    checkIdentity(p.data.snapshot.identity);
    await Promise.all(
      this.replicas.map((r) =>
        fetch(`${r.url}/hint`, { method: 'POST', body: JSON.stringify(p.data) }),
      ),
    );
    sendJson(res, 200, {});
  }

  // ---------------------------------------------------------------------------------------
  // Inference
  // ---------------------------------------------------------------------------------------

  private pickReplica(key: string | undefined, i: number): GatewayReplica {
    const n = this.replicas.length;
    if (n === 0)
      throw new GatewayError(
        503,
        'unavailable',
        `${this.deploymentName} has no replicas (scaled to zero)`,
      );
    if (key !== undefined) {
      const h = createHash('sha256').update(key).digest().readUInt32BE(0);
      return this.replicas[h % n] as GatewayReplica;
    }
    return this.replicas[(this.rr++ + i) % n] as GatewayReplica;
  }

  private async completions(
    req: IncomingMessage,
    res: ServerResponse,
    chat: boolean,
  ): Promise<void> {
    const raw = await readJson(req);
    const tok = this.tokenizer;
    let prompt: number[];
    let stopTokens: number[];
    let promptText: string;
    let wantLogprobs: boolean;
    let topN: number;
    let b: z.infer<typeof completionsBodySchema> | z.infer<typeof chatBodySchema>;
    if (chat) {
      const p = chatBodySchema.safeParse(raw);
      if (!p.success) throw new GatewayError(400, 'invalid_argument', zodMessage(p.error));
      b = p.data;
      try {
        prompt = this.renderer.renderGenerationPrompt(p.data.messages as never);
      } catch (err) {
        throw new GatewayError(400, 'invalid_argument', (err as Error).message);
      }
      stopTokens = p.data.ignore_eos ? [] : [...this.renderer.stopTokens];
      wantLogprobs = p.data.logprobs === true;
      topN = p.data.top_logprobs ?? 0;
      promptText = tok.decode(prompt);
    } else {
      const p = completionsBodySchema.safeParse(raw);
      if (!p.success) throw new GatewayError(400, 'invalid_argument', zodMessage(p.error));
      b = p.data;
      if (typeof p.data.prompt === 'string') {
        prompt = tok.encode(p.data.prompt);
        promptText = p.data.prompt;
      } else {
        prompt = p.data.prompt;
        promptText = tok.decode(prompt.filter((t) => t < tok.vocabSize));
      }
      if (prompt.length === 0) throw new GatewayError(400, 'invalid_argument', 'prompt is empty');
      stopTokens = p.data.ignore_eos ? [] : [tok.eosId];
      const lp = p.data.logprobs;
      wantLogprobs = lp === true || (typeof lp === 'number' && lp >= 0);
      topN = typeof lp === 'number' ? lp : (p.data.top_logprobs ?? 0);
    }
    const stops = b.stop == null ? [] : typeof b.stop === 'string' ? [b.stop] : b.stop;
    const affinity =
      header(req, 'x-session-affinity') ?? header(req, 'x-multi-turn-session-id') ?? b.user;
    const sessionId = header(req, 'x-multi-turn-session-id') ?? affinity;
    const drain = header(req, 'x-fireworks-hot-load-drain-timeout');
    const drainS = drain !== undefined ? Number(drain) : undefined;
    if (drainS !== undefined && !(drainS > 0))
      throw new GatewayError(
        400,
        'invalid_argument',
        'x-fireworks-hot-load-drain-timeout must be a positive number of seconds',
      );
    // an unset max_tokens never asks for more than the context has left
    const context = Number(this.baseConfig.max_position_embeddings ?? 2048);
    const maxTokens =
      b.max_tokens ?? Math.max(1, Math.min(chat ? 256 : 16, context - prompt.length));
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);

    // open every choice's replica stream; a 425/4xx before any output becomes the response
    const streams = await Promise.all(
      Array.from({ length: b.n }, async (_, i) => {
        const replica = this.pickReplica(affinity, i);
        const ctl = new AbortController();
        const r = await fetch(`${replica.url}/generate`, {
          method: 'POST',
          signal: ctl.signal,
          body: JSON.stringify({
            prompt,
            max_tokens: maxTokens,
            temperature: b.temperature,
            top_p: b.top_p,
            top_k: b.top_k,
            seed: b.seed !== undefined ? b.seed + i : undefined,
            stop_tokens: stopTokens,
            top_logprobs: topN,
            echo: b.echo,
            session_id: sessionId,
            drain_timeout_s: drainS,
            // events one by one only where they are used as they come: SSE, and stop strings
            // (the generation is cut where one appears); otherwise all at the end, which
            // spares the replica a socket write per token
            stream: b.stream || stops.length > 0,
          }),
        });
        return { replica, r, ctl, i };
      }),
    );
    const bad = streams.find((s) => !s.r.ok);
    if (bad) {
      for (const s of streams) if (s !== bad) s.ctl.abort();
      const body = (await bad.r.json().catch(() => ({}))) as {
        error?: { code?: string; message?: string };
      };
      const headers: Record<string, string> =
        bad.r.status === 425 ? { 'x-fireworks-hot-load-drain-timeout': String(drainS ?? 90) } : {};
      throw new GatewayError(
        bad.r.status,
        body.error?.code ?? 'replica_error',
        body.error?.message ?? 'replica error',
        headers,
      );
    }

    // a client that goes away stops its generations on the replicas
    res.on('close', () => {
      if (!res.writableFinished) for (const s of streams) s.ctl.abort();
    });
    const sse = b.stream;
    if (sse)
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);

    const choices = await Promise.all(
      streams.map(async ({ replica, r, ctl, i }): Promise<Choice> => {
        const c: Choice = {
          index: i,
          tokens: [],
          logprobs: [],
          top: [],
          text: '',
          finishReason: 'length',
          snapshot: null,
          promptLogprobs: null,
          cachedTokens: 0,
          prefillQueueMs: 0,
          prefillMs: 0,
          decodeMs: 0,
          replicaId: replica.id,
        };
        let emitted = 0; // chars of c.text already streamed
        let stopped = false;
        const visible = () => c.tokens.filter((t) => !stopTokens.includes(t) && t < tok.vocabSize);
        const onEvent = (e: GenerateEvent) => {
          if (stopped) return;
          if (e.type === 'prompt') {
            c.promptLogprobs = e.promptLogprobs;
            c.cachedTokens = e.cachedTokens;
            c.prefillQueueMs = e.prefillQueueMs;
            c.prefillMs = e.prefillMs;
            c.snapshot = e.snapshot;
            return;
          }
          if (e.type === 'done') {
            c.finishReason = e.finishReason;
            c.decodeMs = e.decodeMs;
            c.snapshot = e.snapshot;
            return;
          }
          c.tokens.push(e.token);
          c.logprobs.push(e.logprob);
          c.top.push(e.top);
          c.snapshot = e.snapshot;
          let text = tok.decode(visible());
          let hold = 0;
          for (const s of stops) {
            const at = text.indexOf(s);
            if (at >= 0) {
              text = text.slice(0, at);
              stopped = true;
              c.finishReason = 'stop';
            }
          }
          if (!stopped) {
            hold = heldBack(text, stops);
            while (text.length - hold > emitted && text[text.length - hold - 1] === '\uFFFD')
              hold++;
          }
          c.text = text;
          if (stopped) ctl.abort();
          if (sse) {
            const upto = text.length - hold;
            const piece = text.slice(emitted, upto);
            emitted = Math.max(emitted, upto);
            send(this.chunk(id, created, chat, i, piece, e, wantLogprobs, c.snapshot));
          }
        };
        try {
          await readNdjson(r, onEvent);
        } catch (err) {
          if (!stopped) throw err;
        }
        if (sse && emitted < c.text.length)
          send(this.chunk(id, created, chat, i, c.text.slice(emitted), null, false, c.snapshot));
        return c;
      }),
    );
    const usage = {
      prompt_tokens: prompt.length,
      completion_tokens: choices.reduce((a, c) => a + c.tokens.length, 0),
      total_tokens: prompt.length * b.n + choices.reduce((a, c) => a + c.tokens.length, 0),
      prompt_tokens_details: { cached_tokens: Math.max(0, ...choices.map((c) => c.cachedTokens)) },
    };
    const timing = {
      prefill_queue_duration: Math.max(...choices.map((c) => c.prefillQueueMs)) / 1000,
      prefill_duration: Math.max(...choices.map((c) => c.prefillMs)) / 1000,
      decode_duration: Math.max(...choices.map((c) => c.decodeMs)) / 1000,
    };
    const snapshot = choices[0]?.snapshot ?? null;
    if (sse) {
      for (const c of choices)
        send({
          id,
          object: chat ? 'chat.completion.chunk' : 'text_completion',
          created,
          model: this.opts.model,
          choices: [
            chat
              ? { index: c.index, delta: {}, finish_reason: c.finishReason }
              : { index: c.index, text: '', finish_reason: c.finishReason },
          ],
          snapshot_identity: c.snapshot,
        });
      send({
        id,
        object: chat ? 'chat.completion.chunk' : 'text_completion',
        created,
        model: this.opts.model,
        choices: [],
        usage,
        server_timing: timing,
        snapshot_identity: snapshot,
        prompt_token_ids: prompt,
      });
      res.end('data: [DONE]\n\n');
      return;
    }
    const body = {
      id,
      object: chat ? 'chat.completion' : 'text_completion',
      created,
      model: this.opts.model,
      prompt_token_ids: prompt,
      choices: choices.map((c) =>
        chat
          ? this.chatChoice(c, wantLogprobs)
          : this.textChoice(c, prompt, promptText, b.echo, wantLogprobs),
      ),
      usage,
      server_timing: timing,
      snapshot_identity: snapshot,
      replicas: choices.map((c) => c.replicaId),
    };
    res.setHeader(
      'server-timing',
      `prefill-queue;dur=${(timing.prefill_queue_duration * 1000).toFixed(3)}, prefill;dur=${(timing.prefill_duration * 1000).toFixed(3)}, decode;dur=${(timing.decode_duration * 1000).toFixed(3)}`,
    );
    if (snapshot) res.setHeader('x-snapshot-identity', snapshot);
    sendJson(res, 200, body);
  }

  private tokenText(t: number): string {
    return t < this.tokenizer.vocabSize ? this.tokenizer.decode([t]) : `<|${t}|>`;
  }

  private chunk(
    id: string,
    created: number,
    chat: boolean,
    index: number,
    text: string,
    e: Extract<GenerateEvent, { type: 'token' }> | null,
    logprobs: boolean,
    snapshot: string | null,
  ): unknown {
    const lp =
      logprobs && e
        ? chat
          ? {
              content: [
                {
                  token: this.tokenText(e.token),
                  logprob: e.logprob,
                  top_logprobs: e.top.map((x) => ({
                    token: this.tokenText(x.token),
                    logprob: x.logprob,
                  })),
                },
              ],
            }
          : {
              tokens: [this.tokenText(e.token)],
              token_logprobs: [e.logprob],
              top_logprobs: [
                Object.fromEntries(e.top.map((x) => [this.tokenText(x.token), x.logprob])),
              ],
            }
        : null;
    return {
      id,
      object: chat ? 'chat.completion.chunk' : 'text_completion',
      created,
      model: this.opts.model,
      choices: [
        chat
          ? {
              index,
              delta: { role: 'assistant', content: text },
              logprobs: lp,
              finish_reason: null,
              token_ids: e ? [e.token] : [],
            }
          : { index, text, logprobs: lp, finish_reason: null, token_ids: e ? [e.token] : [] },
      ],
      snapshot_identity: snapshot,
    };
  }

  private textChoice(
    c: Choice,
    prompt: number[],
    promptText: string,
    echo: boolean,
    logprobs: boolean,
  ): unknown {
    let lp: unknown = null;
    if (logprobs) {
      const toks = echo ? [...prompt, ...c.tokens] : c.tokens;
      const vals = echo
        ? [...(c.promptLogprobs ?? prompt.map(() => null)), ...c.logprobs]
        : c.logprobs;
      const tops = echo ? [...prompt.map(() => null), ...c.top] : c.top;
      lp = {
        tokens: toks.map((t) => this.tokenText(t)),
        token_ids: toks,
        token_logprobs: vals,
        top_logprobs: tops.map((t) =>
          t ? Object.fromEntries(t.map((x) => [this.tokenText(x.token), x.logprob])) : null,
        ),
      };
    }
    return {
      index: c.index,
      text: echo ? promptText + c.text : c.text,
      token_ids: c.tokens,
      raw_output: { completion: c.text, completion_token_ids: c.tokens },
      logprobs: lp,
      finish_reason: c.finishReason,
      snapshot_identity: c.snapshot,
    };
  }

  private chatChoice(c: Choice, logprobs: boolean): unknown {
    return {
      index: c.index,
      message: { role: 'assistant', content: c.text },
      token_ids: c.tokens,
      logprobs: logprobs
        ? {
            content: c.tokens.map((t, k) => ({
              token: this.tokenText(t),
              token_id: t,
              logprob: c.logprobs[k],
              top_logprobs: (c.top[k] ?? []).map((x) => ({
                token: this.tokenText(x.token),
                logprob: x.logprob,
              })),
            })),
          }
        : null,
      finish_reason: c.finishReason,
      snapshot_identity: c.snapshot,
    };
  }
}

function publicStatus(s: ReplicaStatus): unknown {
  return {
    replica_id: s.replica_id,
    readiness: s.readiness,
    current_snapshot_identity: s.current_snapshot_identity,
    loading_state: s.loading_state,
    prefix_cache: s.prefix_cache,
    decode_batches: s.decode_batches,
    inflight: s.inflight,
    generated_tokens: s.generated_tokens,
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

async function readNdjson(r: Response, on: (e: GenerateEvent) => void): Promise<void> {
  if (!r.body) return;
  const dec = new TextDecoder();
  let buf = '';
  for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line) on(JSON.parse(line) as GenerateEvent);
      nl = buf.indexOf('\n');
    }
  }
}

// The deployment gateway: the OpenAI-compatible inference API over the replicas (models,
// completions, chat completions: inference.ts), and the hot-load API with its ledger.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { z } from 'zod';
import { type ObjectStore, openObjectStore } from '../../checkpoints/object-store/index.js';
import { Counter, ServerMetrics } from '../../metrics/index.js';
import type { Renderer, Tokenizer } from '../../tokenizers/index.js';
import { loadModelRenderer } from '../../tokenizers/model-files.js';
import { BodyTooLargeError, DEFAULT_BODY_LIMIT } from '../../util/http-body.js';
import { type Logger, silentLogger } from '../log.js';
import type { ReplicaStatus, TransitionType } from '../replica/runtime.js';
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
import { GatewayAuth, type KeyVerifier } from './auth.js';
import { errorBody, GatewayError } from './errors.js';
import { serveInference } from './inference.js';
import { Ledger } from './ledger.js';
import { parseChat, parseCompletions } from './requests.js';
import { TokenSpelling } from './shapes.js';
import { replicaHeaders } from './upstream.js';

export { GatewayError } from './errors.js';
export { chatBodySchema, completionsBodySchema } from './requests.js';

export interface GatewayReplica {
  id: string;
  url: string;
  /** The replica's bearer token, if it requires one (replica/launcher.ts). */
  token?: string | undefined;
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
  /** A static key also accepted (tests, single-user set-ups). */
  apiKey?: string | undefined;
  /**
   * The deployment's access token (auth.ts): when set, every call must carry a credential,
   * this token or (with `verifyKey`) an API key of the deployment's account.
   */
  accessToken?: string | undefined;
  verifyKey?: KeyVerifier | undefined;
  logger?: Logger;
}

/** The gateway's fixed routes, their own metric labels (routeOf). */
const GATEWAY_ROUTES = new Set([
  '/inference/v1/completions',
  '/inference/v1/chat/completions',
  '/inference/v1/models',
  '/hot_load/v1/models/hot_load',
  '/hot_load/v1/models/hot_load/hint',
  '/metrics',
]);

/** `GET /metrics/replicas/{replica}`: a replica's own /metrics (see Gateway.replicaMetrics). */
const REPLICA_METRICS = '/metrics/replicas/';

export class Gateway {
  readonly opts: GatewayOptions;
  readonly ledger = new Ledger();
  private readonly log: Logger;
  private replicas: GatewayReplica[];
  private rr = 0;
  private server: Server | null = null;
  private readonly spelling: TokenSpelling;
  /** LoRA models this deployment serves on its base (their names, as /models lists them). */
  private addons: string[] = [];
  /**
   * Multi-LoRA addons: model name → its adapter snapshot in the hot-load bucket, each served
   * beside the base by every replica and picked per request by the body's model.
   */
  private readonly multiLora = new Map<string, string>();
  private readonly createdAt = Math.floor(Date.now() / 1000);
  private readonly serving = { count: 0 };
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
    this.spelling = new TokenSpelling(tokenizer);
    this.auth =
      opts.accessToken !== undefined
        ? new GatewayAuth(
            opts.account,
            `accounts/${opts.account}/deployments/${opts.deploymentId}`,
            opts.accessToken,
            opts.verifyKey,
            opts.apiKey,
          )
        : null;
    this.metrics = new ServerMetrics({ defaultLabels: { deployment: this.deploymentName } });
    this.hotLoads = new Counter({
      name: 'temper_hotloads_total',
      help: 'Hot-load signals by snapshot type (full, delta, adapter) and result (signalled: handed to every replica; refused).',
      labelNames: ['snapshot_type', 'result'],
      registers: [this.metrics.registry],
    });
  }
  private readonly auth: GatewayAuth | null;
  /** GET /metrics (Prometheus, behind the same credential as every other route). */
  readonly metrics: ServerMetrics;
  private readonly hotLoads: Counter<'snapshot_type' | 'result'>;

  static async create(opts: GatewayOptions): Promise<Gateway> {
    // the model's own chat template unless its files name a built-in renderer
    const renderer = await loadModelRenderer(opts.baseModelDir);
    const tokenizer = renderer.tokenizer;
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

  /**
   * The LoRA models served on the base (a deployment of a LoRA model hot-loads its adapter):
   * /models lists them after the base, and responses name the first as their model.
   */
  setAddons(models: string[]): void {
    this.addons = [...models];
  }

  /** The multi-LoRA addons loaded, in load order. */
  loadedAddons(): { model: string; identity: string }[] {
    return [...this.multiLora].map(([model, identity]) => ({ model, identity }));
  }

  /**
   * Loads the LoRA adapter snapshot `identity` (PEFT layout, in the hot-load bucket) on every
   * replica as the addon `model`, served beside the base to requests whose model names it;
   * resolves once every replica serves it. A model already loaded is replaced. On a failure no
   * replica keeps the new adapter (those that had the old one get it back) and it throws.
   */
  async loadAddon(model: string, identity: string): Promise<void> {
    checkIdentity(identity);
    if (model === this.opts.model || this.addons.includes(model))
      throw new GatewayError(
        400,
        'invalid_argument',
        `${model} is already what ${this.deploymentName} serves without an addon`,
      );
    if ((await this.store.stat(`${identity}/adapter_config.json`)) === null)
      throw new GatewayError(
        404,
        'not_found',
        `${this.store.url}/${identity}/adapter_config.json does not exist: upload the LoRA adapter before loading it`,
      );
    const previous = this.multiLora.get(model);
    const replicas = [...this.replicas];
    const results = await Promise.allSettled(
      replicas.map((r) => replicaCall(r, '/addons', { name: model, identity })),
    );
    const failed = results.find((x) => x.status === 'rejected');
    if (failed) {
      await Promise.allSettled(
        replicas.map((r, i) =>
          results[i]?.status !== 'fulfilled'
            ? null
            : previous !== undefined
              ? replicaCall(r, '/addons', { name: model, identity: previous })
              : replicaCall(r, '/addons/unload', { name: model }),
        ),
      );
      throw (failed as PromiseRejectedResult).reason;
    }
    this.multiLora.set(model, identity);
    this.log.info({ model, identity }, 'LoRA addon loaded');
  }

  /** Stops serving the addon `model` on every replica; false if it is not loaded. */
  async unloadAddon(model: string): Promise<boolean> {
    if (!this.multiLora.has(model)) return false;
    this.multiLora.delete(model);
    await Promise.allSettled(
      this.replicas.map((r) => replicaCall(r, '/addons/unload', { name: model })),
    );
    this.log.info({ model }, 'LoRA addon unloaded');
    return true;
  }

  /**
   * The addon a request's model names (`model` or `model#deployment`), or undefined for the
   * base. A model of the accounts/{a}/models/{m} form that this deployment does not serve is
   * refused rather than answered by the base.
   */
  private adapterOf(raw: unknown): string | undefined {
    const field = (raw as { model?: unknown } | null)?.model;
    if (typeof field !== 'string') return undefined;
    const model = field.split('#')[0] as string;
    if (this.multiLora.has(model)) return model;
    if (
      /^accounts\/[^/]+\/models\/[^/]+$/.test(model) &&
      model !== this.opts.model &&
      !this.addons.includes(model)
    )
      throw new GatewayError(
        404,
        'model_not_found',
        `The model '${model}' is not served by ${this.deploymentName} (it serves ${this.models()
          .map((x) => x.id)
          .join(', ')}): load it as an addon first`,
        {},
        'model',
      );
    return undefined;
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
    const served = await this.catchUpSnapshot(replica, timeoutMs);
    // and the multi-LoRA addons the others serve
    for (const [name, identity] of this.multiLora)
      await replicaCall(replica, '/addons', { name, identity });
    return served;
  }

  private async catchUpSnapshot(
    replica: GatewayReplica,
    timeoutMs: number,
  ): Promise<string | null> {
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
        headers: replicaHeaders(replica),
        body: JSON.stringify(body),
      });
      if (!out.ok)
        throw new GatewayError(502, 'replica_error', `${replica.id}: ${await out.text()}`);
    }
    const t0 = Date.now();
    for (;;) {
      const s = (await (
        await fetch(`${replica.url}/status`, { headers: replicaHeaders(replica) })
      ).json()) as ReplicaStatus;
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
      this.metrics.track(req, res, () => this.routeOf(req));
      void this.handle(req, res, null).catch((err: unknown) => this.fail(res, err));
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
    const status =
      err instanceof GatewayError
        ? err.status
        : err instanceof HotLoadError
          ? err.code === 'too_early'
            ? 425
            : err.code === 'not_found'
              ? 404
              : err.code === 'payload_too_large'
                ? 413
                : 400
          : err instanceof BodyTooLargeError
            ? 413
            : 500;
    const code = err instanceof GatewayError || err instanceof HotLoadError ? err.code : 'internal';
    const param = err instanceof GatewayError ? err.param : null;
    const body = errorBody(status, (err as Error).message, code, param);
    if (status >= 500) this.log.warn({ err: (err as Error).message }, 'request failed');
    if (res.headersSent) {
      // a stream that fails after it began ends with an error event, as OpenAI's do
      if (res.getHeader('content-type') === 'text/event-stream' && !res.writableEnded)
        res.end(`data: ${JSON.stringify(body)}\n\n`);
      else if (!res.writableEnded) res.end();
      return;
    }
    // a refused body is drained briefly and its connection closed by readBodyLimited
    sendJson(res, status, body, err instanceof GatewayError ? err.headers : {});
  }

  /**
   * Serves one request handed over in process by a caller that already authenticated it and
   * routed it to this deployment (the control plane's /inference and /hot_load routes), with
   * the body it has read: the same routes and answers as over HTTP, without a loopback hop
   * (one per streamed token on the SSE path). The caller's credential is not checked again.
   */
  dispatch(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
    this.metrics.track(req, res, () => this.routeOf(req));
    return this.handle(req, res, body).catch((err: unknown) => this.fail(res, err));
  }

  /** A request's JSON body: the one handed over in process, else read from the socket. */
  private async json(req: IncomingMessage, body: Buffer | null): Promise<unknown> {
    if (body === null) return readJson(req);
    if (body.length > DEFAULT_BODY_LIMIT)
      throw new HotLoadError(
        'payload_too_large',
        new BodyTooLargeError(DEFAULT_BODY_LIMIT).message,
      );
    const text = body.toString('utf8');
    if (text.length === 0) return {};
    try {
      return JSON.parse(text);
    } catch {
      throw new HotLoadError('invalid_argument', 'request body is not valid JSON');
    }
  }

  private async checkHeaders(req: IncomingMessage, handedOver: boolean): Promise<void> {
    // a hand-over was authenticated and routed by its caller (the deployment header included)
    if (handedOver) {
      this.checkModelHeader(req);
      return;
    }
    if (this.auth) await this.auth.check(req);
    else if (
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
    this.checkModelHeader(req);
  }

  private checkModelHeader(req: IncomingMessage): void {
    const model = req.headers['fireworks-model'];
    if (typeof model === 'string' && model !== this.opts.model)
      throw new GatewayError(
        404,
        'not_found',
        `this deployment serves ${this.opts.model}, not ${model}`,
      );
  }

  private async handle(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer | null,
  ): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] as string;
    await this.checkHeaders(req, body !== null);
    const ledgerPath = `/v1/${this.deploymentName}/ledger`;
    if (req.method === 'POST' && path === '/inference/v1/completions')
      return this.infer(req, res, body, false);
    if (req.method === 'POST' && path === '/inference/v1/chat/completions')
      return this.infer(req, res, body, true);
    if (req.method === 'GET' && path === '/inference/v1/models')
      return sendJson(res, 200, { object: 'list', data: this.models() });
    if (req.method === 'GET' && path.startsWith('/inference/v1/models/')) {
      const id = decodeURIComponent(path.slice('/inference/v1/models/'.length));
      const m = this.models().find((x) => x.id === id);
      if (!m)
        throw new GatewayError(
          404,
          'model_not_found',
          `The model '${id}' does not exist on ${this.deploymentName} (it serves ${this.models()
            .map((x) => x.id)
            .join(', ')})`,
          {},
          'model',
        );
      return sendJson(res, 200, m);
    }
    if (path === '/hot_load/v1/models/hot_load' && req.method === 'POST')
      return this.signal(req, res, body);
    if (path === '/hot_load/v1/models/hot_load' && req.method === 'GET')
      return sendJson(res, 200, { replicas: (await this.statuses()).map(publicStatus) });
    if (path === '/hot_load/v1/models/hot_load/hint' && req.method === 'POST')
      return this.hint(req, res, body);
    if (path === ledgerPath && req.method === 'GET') {
      this.ledger.update(await this.statuses());
      return sendJson(res, 200, { deployment: this.deploymentName, snapshots: this.ledger.list() });
    }
    if (path === ledgerPath && req.method === 'DELETE')
      return sendJson(res, 200, { deployment: this.deploymentName, removed: this.ledger.reset() });
    if (path === '/metrics' && req.method === 'GET') {
      const { body: text, contentType } = await this.metrics.render();
      res.writeHead(200, { 'content-type': contentType });
      res.end(text);
      return;
    }
    if (path.startsWith(REPLICA_METRICS) && req.method === 'GET')
      return this.replicaMetrics(res, decodeURIComponent(path.slice(REPLICA_METRICS.length)));
    throw new GatewayError(404, 'not_found', `no route ${req.method} ${path}`);
  }

  // ---------------------------------------------------------------------------------------
  // Hot-load
  // ---------------------------------------------------------------------------------------

  async statuses(): Promise<ReplicaStatus[]> {
    return Promise.all(
      this.replicas.map(async (r): Promise<ReplicaStatus> => {
        try {
          const res = await fetch(`${r.url}/status`, { headers: replicaHeaders(r) });
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

  /**
   * A replica's own /metrics, fetched with its token: only the gateway holds that, so this is
   * where a deployment's callers (and a Prometheus scraping with the deployment's credential)
   * read it, one scrape target per replica.
   */
  private async replicaMetrics(res: ServerResponse, id: string): Promise<void> {
    const replica = this.replicas.find((r) => r.id === id);
    if (!replica)
      throw new GatewayError(
        404,
        'not_found',
        `no replica '${id}' in ${this.deploymentName}; it has ${this.replicas.map((r) => r.id).join(', ') || 'none'}`,
      );
    const answer = await fetch(`${replica.url}/metrics`, { headers: replicaHeaders(replica) })
      .then(async (upstream) => ({ upstream, text: await upstream.text() }))
      .catch((err: unknown) => {
        throw new GatewayError(502, 'replica_error', `${id}: ${(err as Error).message}`);
      });
    const { upstream, text } = answer;
    if (!upstream.ok) throw new GatewayError(502, 'replica_error', `${id}: ${text}`);
    res.writeHead(200, {
      'content-type': upstream.headers.get('content-type') ?? 'text/plain; version=0.0.4',
    });
    res.end(text);
  }

  /** A request's route pattern for metrics: ids and names become placeholders. */
  private routeOf(req: IncomingMessage): string {
    const path = (req.url ?? '/').split('?')[0] as string;
    if (GATEWAY_ROUTES.has(path)) return path;
    if (path.startsWith('/inference/v1/models/')) return '/inference/v1/models/:model';
    if (path.startsWith(REPLICA_METRICS)) return `${REPLICA_METRICS}:replica`;
    if (path === `/v1/${this.deploymentName}/ledger`)
      return '/v1/accounts/:account/deployments/:deployment/ledger';
    return 'unmatched';
  }

  private async signal(
    req: IncomingMessage,
    res: ServerResponse,
    raw: Buffer | null,
  ): Promise<void> {
    const outcome = { type: 'unknown' };
    try {
      await this.signalSnapshot(req, res, raw, outcome);
      this.hotLoads.inc({ snapshot_type: outcome.type, result: 'signalled' });
    } catch (err) {
      this.hotLoads.inc({ snapshot_type: outcome.type, result: 'refused' });
      throw err;
    }
  }

  private async signalSnapshot(
    req: IncomingMessage,
    res: ServerResponse,
    raw: Buffer | null,
    outcome: { type: string },
  ): Promise<void> {
    const p = loadBodySchema.safeParse(await this.json(req, raw));
    if (!p.success) throw new GatewayError(400, 'invalid_argument', zodMessage(p.error));
    const body = p.data;
    checkIdentity(body.identity);
    const inc = body.incremental_snapshot_metadata;
    outcome.type = inc ? 'delta' : 'full';
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
    if (isAdapter) outcome.type = 'adapter';
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
        const out = await fetch(`${r.url}/load`, {
          method: 'POST',
          headers: replicaHeaders(r),
          body: JSON.stringify(body),
        });
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

  private async hint(req: IncomingMessage, res: ServerResponse, raw: Buffer | null): Promise<void> {
    const p = hintBodySchema.safeParse(await this.json(req, raw));
    if (!p.success) throw new GatewayError(400, 'invalid_argument', zodMessage(p.error));
    checkIdentity(p.data.snapshot.identity);
    await Promise.all(
      this.replicas.map((r) =>
        fetch(`${r.url}/hint`, {
          method: 'POST',
          headers: replicaHeaders(r),
          body: JSON.stringify(p.data),
        }),
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

  /** The models this deployment answers for, in OpenAI's Model shape. */
  models(): { id: string; object: 'model'; created: number; owned_by: string }[] {
    return [this.opts.model, ...this.addons, ...this.multiLora.keys()].map((id) => ({
      id,
      object: 'model' as const,
      created: this.createdAt,
      owned_by: id.split('/')[1] ?? this.opts.account,
    }));
  }

  private async infer(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer | null,
    chat: boolean,
  ): Promise<void> {
    const raw = await this.json(req, body).catch((err: unknown) => {
      if (err instanceof HotLoadError && err.code === 'payload_too_large') throw err;
      throw new GatewayError(400, 'invalid_argument', 'request body is not valid JSON');
    });
    const vocab = Number(this.baseConfig.vocab_size ?? this.tokenizer.vocabSize);
    const r = chat ? parseChat(raw, this.renderer) : parseCompletions(raw, this.tokenizer, vocab);
    const adapter = this.adapterOf(raw);
    await serveInference(
      {
        adapter,
        tokenizer: this.tokenizer,
        renderer: this.renderer,
        spelling: this.spelling,
        model: () => adapter ?? this.addons[0] ?? this.opts.model,
        contextLength: Number(this.baseConfig.max_position_embeddings ?? 2048),
        pickReplica: (key, i) => this.pickReplica(key, i),
        serving: this.serving,
      },
      r,
      req,
      res,
    );
  }
}

/** A JSON call to a replica; a refusal throws the replica's status and message. */
async function replicaCall(r: GatewayReplica, path: string, body: unknown): Promise<void> {
  const out = await fetch(`${r.url}${path}`, {
    method: 'POST',
    headers: replicaHeaders(r),
    body: JSON.stringify(body),
  });
  if (out.ok) return;
  const e = (
    (await out.json().catch(() => ({}))) as { error?: { code?: string; message?: string } }
  ).error;
  throw new GatewayError(
    out.status < 500 ? out.status : 502,
    e?.code ?? 'replica_error',
    `${r.id}: ${e?.message ?? `HTTP ${out.status}`}`,
  );
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

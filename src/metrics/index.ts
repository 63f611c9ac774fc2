/**
 * Prometheus metrics (prom-client): one registry per server, exposed as GET /metrics in the
 * text format. The control plane, each deployment gateway, each replica and each trainer pod's
 * metrics port use the same request metrics (a scrape target tells them apart); what each adds
 * of its own (jobs by state, hot-loads, tokens generated, trainer calls) is registered by that
 * server. Labels are route patterns, never raw URLs, so an account, job or
 * deployment id never becomes a series of its own.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export { Counter, Gauge, Histogram, Registry };

/** Request latency buckets, seconds: from a cached GET to a long SSE stream. */
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface MetricsOptions {
  /** Labels on every series of this registry (a gateway's deployment). */
  defaultLabels?: Record<string, string>;
  /** Also expose the process's own metrics (CPU, memory, event-loop lag, GC). */
  processMetrics?: boolean;
}

/**
 * The process's metrics live in one registry per process, made on first use: prom-client's
 * collectors (an event-loop delay monitor, a GC observer) are per registry and never stopped,
 * so a test process that starts many servers must not get one set per server.
 */
let processRegistry: Registry | undefined;
function processMetricsRegistry(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** A registry with the HTTP request metrics every temper server reports. */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly latency: Histogram<'method' | 'route' | 'status'>;

  private readonly withProcess: boolean;
  private readonly defaultLabels: Record<string, string> | undefined;

  constructor(options: MetricsOptions = {}) {
    this.defaultLabels = options.defaultLabels;
    if (options.defaultLabels) this.registry.setDefaultLabels(options.defaultLabels);
    this.withProcess = options.processMetrics ?? false;
    this.requests = new Counter({
      name: 'temper_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status code.',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: 'temper_http_request_duration_seconds',
      help: 'Time from a request arriving to its response ending (whole stream for SSE).',
      labelNames: ['method', 'route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers: [this.registry],
    });
  }

  /** Records one answered request. */
  observe(method: string, route: string, status: number, seconds: number): void {
    const labels = { method, route, status: String(status) };
    this.requests.inc(labels);
    this.latency.observe(labels, seconds);
  }

  /**
   * Times a raw node:http request: recorded when its response ends or its connection closes,
   * with the route `routeOf` names once the response is done.
   */
  track(req: IncomingMessage, res: ServerResponse, routeOf: () => string): void {
    const start = process.hrtime.bigint();
    res.once('close', () => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.observe(req.method ?? 'GET', routeOf(), res.statusCode, seconds);
    });
  }

  /** The exposition: body and its Content-Type. */
  async render(): Promise<{ body: string; contentType: string }> {
    if (!this.withProcess)
      return { body: await this.registry.metrics(), contentType: this.registry.contentType };
    // A merged registry has no default labels of its own: they go on every series of the
    // scrape, the process's included (it is this server's process).
    const registry = Registry.merge([processMetricsRegistry(), this.registry]);
    if (this.defaultLabels) registry.setDefaultLabels(this.defaultLabels);
    return { body: await registry.metrics(), contentType: this.registry.contentType };
  }
}

export interface MetricsServer {
  /** host:port it listens on. */
  address: string;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  host: string;
  /** 0: any free port. */
  port: number;
  /**
   * Who may scrape: given the Authorization header, null to let the scrape in, else the
   * message of the 401. Absent: open (a scraper on the network the port is bound to).
   */
  authorize?: (authorization: string) => string | null;
}

/**
 * Serves `GET /metrics` of `metrics` on a port of its own, for processes whose API is not
 * HTTP (a trainer pod speaks gRPC; a worker host serves nothing else).
 */
export function serveMetrics(
  metrics: ServerMetrics,
  options: MetricsServerOptions,
): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const route = req.url === '/metrics' ? '/metrics' : 'unmatched';
    metrics.track(req, res, () => route);
    const json = (status: number, code: string, message: string) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code, message } }));
    };
    const refused = options.authorize?.(req.headers.authorization ?? '') ?? null;
    if (refused !== null) return json(401, 'unauthenticated', refused);
    if (route === 'unmatched' || req.method !== 'GET')
      return json(404, 'not_found', `no route ${req.method} ${req.url}; GET /metrics`);
    metrics.render().then(
      ({ body, contentType }) => {
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
      },
      (error: unknown) => json(500, 'internal', String(error)),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve({
        address: `${options.host}:${(server.address() as AddressInfo).port}`,
        close: () =>
          new Promise((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/**
 * MLflow over its REST API (no Python on the training side): experiments are found or created
 * by name, a run is created (or, when resuming, reopened by id), parameters and per-step
 * metrics go in `runs/log-batch`, artifacts are uploaded through the tracking server's artifact
 * proxy (`mlflow server` serves artifacts by default), and `runs/update` closes the run.
 */
import { type ParamValue, type RunStatus, type Tracker, TrackingError } from './types.js';

/** MLflow's log-batch limits (per request). */
const MAX_METRICS_PER_BATCH = 1000;
const MAX_PARAMS_PER_BATCH = 100;
/** MLflow refuses longer parameter values. */
const MAX_PARAM_VALUE = 6000;

export interface MlflowRunOptions {
  trackingUri: string;
  experimentName: string;
  runName?: string;
  /** Reopen this run (a resumed recipe) instead of creating one. */
  runId?: string;
  tags?: Readonly<Record<string, string>>;
  fetch?: typeof fetch;
}

/** The subset of the REST API a tracker needs; also used by tests to read runs back. */
export class MlflowClient {
  private readonly base: string;
  private readonly fetchFn: typeof fetch;

  constructor(trackingUri: string, fetchFn: typeof fetch = fetch) {
    let url: URL;
    try {
      url = new URL(trackingUri);
    } catch {
      throw new TrackingError(
        `mlflow tracking URI '${trackingUri}' is not a URL (expected http(s)://host:port)`,
      );
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new TrackingError(
        `mlflow tracking URI '${trackingUri}': only http(s) tracking servers are supported`,
      );
    this.base = url.href.replace(/\/+$/, '');
    this.fetchFn = fetchFn;
  }

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const url =
      method === 'GET' && body
        ? `${this.base}${path}?${new URLSearchParams(body as Record<string, string>)}`
        : `${this.base}${path}`;
    let res: Response;
    try {
      res = await this.fetchFn(url, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(method === 'POST' ? { body: JSON.stringify(body ?? {}) } : {}),
      });
    } catch (error) {
      throw new TrackingError(
        `mlflow tracking server ${this.base} is unreachable: ${(error as Error).cause ?? (error as Error).message}`,
      );
    }
    const text = await res.text();
    if (!res.ok) {
      let detail = text.slice(0, 300);
      try {
        const j = JSON.parse(text) as { error_code?: string; message?: string };
        if (j.message) detail = `${j.error_code ?? ''} ${j.message}`.trim();
      } catch {
        // not JSON: keep the raw text
      }
      const err = new TrackingError(`mlflow ${method} ${path}: HTTP ${res.status}: ${detail}`);
      (err as TrackingError & { status: number }).status = res.status;
      throw err;
    }
    return (text ? JSON.parse(text) : {}) as T;
  }

  async experimentId(name: string): Promise<string> {
    try {
      const r = await this.call<{ experiment: { experiment_id: string } }>(
        'GET',
        '/api/2.0/mlflow/experiments/get-by-name',
        { experiment_name: name },
      );
      return r.experiment.experiment_id;
    } catch (error) {
      if ((error as { status?: number }).status !== 404) throw error;
    }
    try {
      const r = await this.call<{ experiment_id: string }>(
        'POST',
        '/api/2.0/mlflow/experiments/create',
        { name },
      );
      return r.experiment_id;
    } catch (error) {
      // another process created it between our two calls
      if (!/RESOURCE_ALREADY_EXISTS/.test((error as Error).message)) throw error;
      const r = await this.call<{ experiment: { experiment_id: string } }>(
        'GET',
        '/api/2.0/mlflow/experiments/get-by-name',
        { experiment_name: name },
      );
      return r.experiment.experiment_id;
    }
  }

  getRun(runId: string): Promise<{ run: MlflowRun }> {
    return this.call('GET', '/api/2.0/mlflow/runs/get', { run_id: runId });
  }

  async metricHistory(
    runId: string,
    key: string,
  ): Promise<{ key: string; value: number; step: number }[]> {
    const r = await this.call<{ metrics?: { key: string; value: number; step: string }[] }>(
      'GET',
      '/api/2.0/mlflow/metrics/get-history',
      { run_id: runId, metric_key: key, max_results: '25000' },
    );
    return (r.metrics ?? []).map((m) => ({ ...m, step: Number(m.step) }));
  }

  async listArtifacts(runId: string): Promise<{ path: string; is_dir: boolean }[]> {
    const r = await this.call<{ files?: { path: string; is_dir: boolean }[] }>(
      'GET',
      '/api/2.0/mlflow/artifacts/list',
      { run_id: runId },
    );
    return r.files ?? [];
  }

  /** Uploads through the server's artifact proxy: `mlflow-artifacts:/…` URIs only. */
  async uploadArtifact(artifactUri: string, path: string, content: Uint8Array): Promise<void> {
    const m = /^mlflow-artifacts:(?:\/\/[^/]*)?\/(.*)$/.exec(artifactUri);
    if (!m)
      throw new TrackingError(
        `mlflow run's artifact location ${artifactUri} is not served by the tracking server; start it with artifact serving (the default of \`mlflow server\`)`,
      );
    const rel = [...(m[1] ?? '').split('/'), ...path.split('/')]
      .filter((s) => s !== '')
      .map(encodeURIComponent)
      .join('/');
    let res: Response;
    try {
      res = await this.fetchFn(`${this.base}/api/2.0/mlflow-artifacts/artifacts/${rel}`, {
        method: 'PUT',
        body: content,
      });
    } catch (error) {
      throw new TrackingError(
        `mlflow tracking server ${this.base} is unreachable: ${(error as Error).message}`,
      );
    }
    if (!res.ok)
      throw new TrackingError(
        `mlflow artifact upload ${path}: HTTP ${res.status}: ${(await res.text()).slice(0, 300)}`,
      );
  }
}

export interface MlflowRun {
  info: { run_id: string; experiment_id: string; status: string; artifact_uri: string };
  data: {
    params?: { key: string; value: string }[];
    metrics?: { key: string; value: number; step: string }[];
    tags?: { key: string; value: string }[];
  };
}

/** MLflow keys: letters, digits, `_ - . / space`; our `name:reduction` becomes `name/reduction`. */
export function mlflowKey(key: string): string {
  return key.replace(/:/g, '/').replace(/[^\w\-./ ]/g, '_');
}

function paramString(v: ParamValue): string {
  const s = v === undefined || v === null ? '' : String(v);
  return s.length > MAX_PARAM_VALUE ? `${s.slice(0, MAX_PARAM_VALUE - 1)}…` : s;
}

export class MlflowTracker implements Tracker {
  private constructor(
    private readonly client: MlflowClient,
    readonly runId: string,
    readonly experimentId: string,
    private readonly artifactUri: string,
  ) {}

  get runRefs(): string[] {
    return [`mlflow:${this.runId}`];
  }

  /** Creates the run (or reopens `runId`, marking it running again). */
  static async open(o: MlflowRunOptions): Promise<MlflowTracker> {
    const client = new MlflowClient(o.trackingUri, o.fetch);
    if (o.runId) {
      const { run } = await client.getRun(o.runId);
      await client.call('POST', '/api/2.0/mlflow/runs/update', {
        run_id: o.runId,
        status: 'RUNNING',
      });
      return new MlflowTracker(client, o.runId, run.info.experiment_id, run.info.artifact_uri);
    }
    const experimentId = await client.experimentId(o.experimentName);
    const tags = Object.entries(o.tags ?? {}).map(([key, value]) => ({ key, value }));
    const r = await client.call<{ run: MlflowRun }>('POST', '/api/2.0/mlflow/runs/create', {
      experiment_id: experimentId,
      start_time: Date.now(),
      ...(o.runName ? { run_name: o.runName } : {}),
      tags,
    });
    return new MlflowTracker(client, r.run.info.run_id, experimentId, r.run.info.artifact_uri);
  }

  async logParams(params: Readonly<Record<string, ParamValue>>): Promise<void> {
    const all = Object.entries(params).map(([key, v]) => ({
      key: mlflowKey(key),
      value: paramString(v),
    }));
    for (let i = 0; i < all.length; i += MAX_PARAMS_PER_BATCH)
      await this.client.call('POST', '/api/2.0/mlflow/runs/log-batch', {
        run_id: this.runId,
        params: all.slice(i, i + MAX_PARAMS_PER_BATCH),
      });
  }

  async logMetrics(step: number, metrics: Readonly<Record<string, number>>): Promise<void> {
    const timestamp = Date.now();
    const all = Object.entries(metrics)
      .filter(([, v]) => Number.isFinite(v))
      .map(([key, value]) => ({ key: mlflowKey(key), value, timestamp, step }));
    for (let i = 0; i < all.length; i += MAX_METRICS_PER_BATCH)
      await this.client.call('POST', '/api/2.0/mlflow/runs/log-batch', {
        run_id: this.runId,
        metrics: all.slice(i, i + MAX_METRICS_PER_BATCH),
      });
  }

  logArtifact(path: string, content: string | Uint8Array): Promise<void> {
    const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : content;
    return this.client.uploadArtifact(this.artifactUri, path, bytes);
  }

  async finish(status: RunStatus): Promise<void> {
    await this.client.call('POST', '/api/2.0/mlflow/runs/update', {
      run_id: this.runId,
      status,
      end_time: Date.now(),
    });
  }
}

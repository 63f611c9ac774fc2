/**
 * The REST API over the real platform parts (startTestPlatform: Temporal dev server, a worker,
 * SQLite, file:// stores) on a loopback port, with accounts and their API keys, and a JSON
 * caller. One per end-to-end test file; `restartControlPlane` replaces the control plane on a
 * new port while the platform (and every running job) stays.
 */
import {
  bootstrapAccount,
  type ControlPlane,
  createControlPlane,
} from '../../src/control-plane/index.js';
import { DeploymentRegistry } from '../../src/deployments/index.js';
import { startTestPlatform, type TestPlatform } from './platform.js';

export type Json = Record<string, unknown>;

export interface MetricRow {
  step: number;
  values: Record<string, number>;
}

/** One DPO/ORPO preference row: a question, the preferred and the non-preferred answer. */
export const preferencePair = (q: string, good: string, bad: string): string =>
  JSON.stringify({
    input: { messages: [{ role: 'user', content: q }] },
    preferred_output: [{ role: 'assistant', content: good }],
    non_preferred_output: [{ role: 'assistant', content: bad }],
  });

export interface RestStack {
  platform: TestPlatform;
  deployments: DeploymentRegistry;
  /** The control plane now serving (a new one after `restartControlPlane`). */
  controlPlane: ControlPlane;
  /** Its origin, e.g. `http://127.0.0.1:41234`. */
  base: string;
  /** Each account's API key, by account id. */
  keys: Record<string, string>;
  /** A JSON request with `Authorization: Bearer <key>` (the first account's key by default). */
  call(
    method: string,
    path: string,
    body?: unknown,
    key?: string,
  ): Promise<{ status: number; json: Json }>;
  /** Polls a job until it ends (completed, failed, cancelled, stopped early); its last GET. */
  waitForJob(path: string, timeoutMs?: number): Promise<Json>;
  /** The job's metric rows, oldest step first. */
  metricRows(path: string): Promise<MetricRow[]>;
  /** Creates a user dataset `id` in `account` and uploads `text` as its JSONL; its JSON answer. */
  uploadDataset(id: string, text: string, account?: string): Promise<Json>;
  restartControlPlane(): Promise<void>;
  /** Closes the control plane (once: a test may have closed it already), deployments, platform. */
  close(): Promise<void>;
}

export async function startRestStack(
  options: {
    /** Accounts to create; the first is the one `call` acts as by default. */
    accounts?: string[];
    platform?: Parameters<typeof startTestPlatform>[0];
  } = {},
): Promise<RestStack> {
  const accounts = options.accounts ?? ['acme'];
  const platform = await startTestPlatform(options.platform);
  const deployments = new DeploymentRegistry(undefined, { openGateways: true });
  const keys: Record<string, string> = {};
  for (const account of accounts)
    keys[account] = (await bootstrapAccount(platform.store, account)).apiKey;
  const defaultKey = keys[accounts[0]!]!;

  // A control plane a test closes itself is not closed again at the end.
  const closed = new WeakSet<ControlPlane>();
  const closeControlPlane = async (cp: ControlPlane) => {
    if (!closed.has(cp)) await cp.close();
  };
  const listen = async () => {
    const controlPlane = createControlPlane({
      store: platform.store,
      orchestrator: platform.orchestrator,
      artifacts: platform.artifacts,
      checkpointUrl: platform.checkpoints.url,
      deployments,
    });
    const close = controlPlane.close.bind(controlPlane);
    controlPlane.close = async () => {
      closed.add(controlPlane);
      await close();
    };
    stack.controlPlane = controlPlane;
    stack.base = await controlPlane.listen(0, '127.0.0.1');
  };

  const stack: RestStack = {
    platform,
    deployments,
    controlPlane: undefined as unknown as ControlPlane,
    base: '',
    keys,
    async call(method, path, body, key = defaultKey) {
      const res = await fetch(`${stack.base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, json: (await res.json()) as Json };
    },
    async waitForJob(path, timeoutMs = 240_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { json } = await stack.call('GET', path);
        if (/COMPLETED|FAILED|CANCELLED|EARLY_STOPPED/.test(String(json.state))) return json;
        if (Date.now() > deadline) throw new Error(`${path} still ${String(json.state)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async metricRows(path) {
      const r = await stack.call('GET', `${path}/metrics`);
      if (r.status !== 200) throw new Error(`${path}/metrics: ${JSON.stringify(r.json)}`);
      return [...(r.json.metrics as MetricRow[])].sort((a, b) => a.step - b.step);
    },
    async uploadDataset(id, text, account = accounts[0]!) {
      const key = keys[account];
      const created = await stack.call(
        'POST',
        `/v1/accounts/${account}/datasets`,
        { datasetId: id, dataset: { userUploaded: {} } },
        key,
      );
      if (created.status !== 200)
        throw new Error(`dataset ${id} not created: ${JSON.stringify(created.json)}`);
      const form = new FormData();
      form.append('file', new Blob([text]), 'data.jsonl');
      const res = await fetch(`${stack.base}/v1/accounts/${account}/datasets/${id}:upload`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}` },
        body: form,
      });
      const json = (await res.json()) as Json;
      if (res.status !== 200)
        throw new Error(`dataset ${id} not uploaded: ${JSON.stringify(json)}`);
      return json;
    },
    async restartControlPlane() {
      await closeControlPlane(stack.controlPlane);
      await listen();
    },
    async close() {
      await closeControlPlane(stack.controlPlane);
      await deployments.close();
      await platform.close();
    },
  };
  await listen();
  return stack;
}

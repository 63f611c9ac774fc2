/**
 * A control plane over real parts for the REST tests: a SQLite store in a temporary file,
 * file:// artifact and checkpoint stores, and two accounts with a key each. Orchestration is
 * the one seam replaced: a recorder that notes every call (the Temporal orchestrator is its
 * own component with its own tests).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type ObjectStore, openObjectStore } from '../../src/checkpoints/object-store/index.js';
import { promoteCheckpoint } from '../../src/checkpoints/promotion.js';
import {
  bootstrapAccount,
  type ControlPlane,
  createControlPlane,
} from '../../src/control-plane/index.js';
import type {
  JobOrchestrator,
  JobRef,
  PromoteRequest,
} from '../../src/control-plane/orchestrator.js';
import type { DeploymentRegistry } from '../../src/deployments/registry.js';
import type { Store } from '../../src/store/index.js';
import { openStore, SecretsKey } from '../../src/store/index.js';

// biome-ignore lint/suspicious/noExplicitAny: the tests read response JSON field by field
export type Json = Record<string, any>;

export interface OrchestratorCall {
  op: 'start' | 'cancel' | 'resume' | 'executeTrainStep' | 'promote';
  arg: JobRef | PromoteRequest;
  request?: unknown;
}

export interface Stores {
  store: Store;
  checkpoints: ObjectStore;
}

/**
 * Records calls; `fail` makes the next call of that op throw. Promotion is the real one (the
 * files are copied by src/checkpoints/promotion and the model row written, as the workflow's
 * promotion activity does), so the models routes see real promoted models.
 */
export class RecordingOrchestrator implements JobOrchestrator {
  readonly calls: OrchestratorCall[] = [];
  fail = new Set<OrchestratorCall['op']>();
  constructor(private readonly stores: () => Stores) {}

  private record(op: OrchestratorCall['op'], arg: JobRef | PromoteRequest, request?: unknown) {
    this.calls.push({ op, arg, ...(request === undefined ? {} : { request }) });
    if (this.fail.delete(op)) throw new Error(`${op} failed (test)`);
  }

  async start(job: JobRef) {
    this.record('start', job);
  }
  async cancel(job: JobRef) {
    this.record('cancel', job);
  }
  async resume(job: JobRef) {
    this.record('resume', job);
  }
  async promote(request: PromoteRequest) {
    this.record('promote', request);
    const { store, checkpoints } = this.stores();
    const model = await promoteCheckpoint(checkpoints, {
      name: request.checkpoint,
      outputModelId: request.outputModelId,
      ...(request.baseModel ? { baseModel: request.baseModel } : {}),
    });
    await store.create('models', request.account, request.outputModelId, model);
    return model;
  }
}

export class TrainStepOrchestrator extends RecordingOrchestrator {
  async executeTrainStep(job: JobRef, request: unknown) {
    this.calls.push({ op: 'executeTrainStep', arg: job, request });
    return { step: 1, metrics: { 'loss:sum': 1.5 } };
  }
}

export interface Harness {
  dir: string;
  store: Store;
  artifacts: ObjectStore;
  checkpoints: ObjectStore;
  orchestrator: RecordingOrchestrator;
  cp: ControlPlane;
  /** Keys of accounts `alice` and `bob`. */
  alice: string;
  bob: string;
  call(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    url: string,
    opts?: { key?: string | null; body?: unknown; headers?: Record<string, string> },
  ): Promise<{ status: number; json: Json }>;
  upload(
    url: string,
    content: string,
    opts?: { key?: string; field?: string },
  ): Promise<{ status: number; json: Json }>;
  close(): Promise<void>;
}

export async function startHarness(
  opts: {
    orchestrator?: (stores: () => Stores) => RecordingOrchestrator;
    deployments?: DeploymentRegistry;
    maxUploadBytes?: number;
  } = {},
): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'temper-cp-'));
  // Secrets are sealed at rest with an operator key, as on a real stack.
  const store = openStore(`sqlite://${join(dir, 'temper.db')}`, {
    secretsKey: SecretsKey.generate().key,
  });
  await store.migrate();
  const artifacts = await openObjectStore(pathToFileURL(join(dir, 'artifacts')).href);
  const checkpoints = await openObjectStore(pathToFileURL(join(dir, 'checkpoints')).href);
  const orchestrator = (opts.orchestrator ?? ((s) => new RecordingOrchestrator(s)))(() => ({
    store,
    checkpoints,
  }));
  const cp = createControlPlane({
    store,
    orchestrator,
    artifacts,
    checkpointUrl: checkpoints.url,
    ...(opts.deployments ? { deployments: opts.deployments } : {}),
    ...(opts.maxUploadBytes ? { maxUploadBytes: opts.maxUploadBytes } : {}),
  });
  const alice = (await bootstrapAccount(store, 'alice')).apiKey;
  const bob = (await bootstrapAccount(store, 'bob')).apiKey;
  const call: Harness['call'] = async (method, url, o = {}) => {
    const key = o.key === undefined ? alice : o.key;
    const res = await cp.app.inject({
      method,
      url,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...o.headers },
      ...(o.body === undefined ? {} : { payload: o.body as Record<string, unknown> }),
    });
    return { status: res.statusCode, json: res.body ? JSON.parse(res.body) : {} };
  };
  const upload: Harness['upload'] = async (url, content, o = {}) => {
    const boundary = '----temper-test-boundary';
    const payload =
      `--${boundary}\r\nContent-Disposition: form-data; name="${o.field ?? 'file'}"; filename="data.jsonl"\r\n` +
      `Content-Type: application/jsonl\r\n\r\n${content}\r\n--${boundary}--\r\n`;
    const res = await cp.app.inject({
      method: 'POST',
      url,
      headers: {
        authorization: `Bearer ${o.key ?? alice}`,
        'content-type': `multipart/form-data; boundary=${boundary}`,
      },
      payload,
    });
    return { status: res.statusCode, json: JSON.parse(res.body) };
  };
  return {
    dir,
    store,
    artifacts,
    checkpoints,
    orchestrator,
    cp,
    alice,
    bob,
    call,
    upload,
    async close() {
      await cp.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** JSONL text from rows. */
export const jsonl = (rows: unknown[]) => `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`;

export const sftRows = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    messages: [
      { role: 'user', content: `What is ${i} + 1?` },
      { role: 'assistant', content: `${i + 1}` },
    ],
  }));

export const dpoRows = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    input: { messages: [{ role: 'user', content: `Say ${i}` }] },
    preferred_output: [{ role: 'assistant', content: `${i}` }],
    non_preferred_output: [{ role: 'assistant', content: 'no' }],
  }));

export const rftRows = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    messages: [{ role: 'user', content: `What is ${i} + 1?` }],
    ground_truth: `${i + 1}`,
  }));

/** Creates and uploads a dataset; returns its name. */
export async function readyDataset(
  h: Harness,
  id: string,
  rows: unknown[],
  key?: string,
): Promise<string> {
  const account = key === h.bob ? 'bob' : 'alice';
  const c = await h.call('POST', `/v1/accounts/${account}/datasets`, {
    key: key ?? h.alice,
    body: { datasetId: id, dataset: { userUploaded: {} } },
  });
  if (c.status !== 200) throw new Error(JSON.stringify(c.json));
  const u = await h.upload(`/v1/accounts/${account}/datasets/${id}:upload`, jsonl(rows), {
    key: key ?? h.alice,
  });
  if (u.status !== 200) throw new Error(JSON.stringify(u.json));
  return `accounts/${account}/datasets/${id}`;
}

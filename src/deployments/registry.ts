// Deployment lifecycle in one process: create / get / list / scale / delete. Each deployment
// is a gateway (in this process) over N replica processes started by a launcher. With
// `records` (the control plane's store) every deployment is also a row: written on every
// change of what it should be, removed on delete, kept when the process stops, and brought
// back by `restore()` when the process starts again (new gateway port, new access token,
// replicas on the base model until the next hot-load). The multi-LoRA addons loaded with
// `loadAddon` are part of the row too, and `restore()` loads them again from the bucket.
import { z } from 'zod';
import { type KeyVerifier, mintAccessToken } from './gateway/auth.js';
import { Gateway } from './gateway/server.js';
import {
  LocalReplicaLauncher,
  type ReplicaHandle,
  type ReplicaLauncher,
} from './replica/launcher.js';

export type DeploymentState = 'CREATING' | 'READY' | 'UPDATING' | 'DELETING' | 'DELETED' | 'FAILED';

const ID = /^[a-z][a-z0-9-]{0,62}$/;

export const createDeploymentSchema = z.object({
  account: z.string().regex(ID),
  deploymentId: z
    .string()
    .regex(ID)
    .refine((s) => !s.endsWith('-'), 'must not end with a hyphen'),
  baseModel: z.string().regex(/^accounts\/[a-z0-9-]+\/models\/[a-z0-9-]+$/),
  baseModelDir: z.string(),
  hotLoad: z.object({
    bucketType: z.enum(['FW_HOSTED', 'S3', 'MINIO', 'NEBIUS']).default('FW_HOSTED'),
    bucketUrl: z.string().refine((u) => !u.endsWith('/'), 'bucket URL must not end with a slash'),
    transitionType: z.enum(['ASYNC', 'SYNC']).default('ASYNC'),
  }),
  minReplicaCount: z.number().int().min(0).default(1),
  maxReplicaCount: z.number().int().min(0).default(1),
  apiKey: z.string().optional(),
  /**
   * Fields of the caller's (the control plane's) resource that the registry keeps with the
   * deployment and hands back unchanged: description, the trainer a bucket belongs to, ...
   */
  fields: z.record(z.string(), z.unknown()).default({}),
  /** Per-replica knobs (threads, test hooks). */
  replica: z
    .object({
      threads: z.number().int().positive().optional(),
      maxConcurrent: z.number().int().positive().optional(),
      stepDelayMs: z.number().nonnegative().optional(),
      swapDelayMs: z.number().nonnegative().optional(),
      weightsAs: z.enum(['initializers', 'inputs']).optional(),
      maxDecodeBatch: z.number().int().positive().optional(),
    })
    .default({}),
});
export type CreateDeploymentRequest = z.input<typeof createDeploymentSchema>;

export interface DeploymentResource {
  name: string;
  baseModel: string;
  state: DeploymentState;
  minReplicaCount: number;
  maxReplicaCount: number;
  replicaCount: number;
  hotLoad: { bucketType: string; bucketUrl: string; transitionType: 'ASYNC' | 'SYNC' };
  gatewayUrl: string | null;
  createTime: string;
  updateTime: string;
  status: { reason: string | null; replicaRestarts: number };
  /** The caller's fields, as given at create or by `setFields`. */
  fields: Record<string, unknown>;
}

export class DeploymentError extends Error {
  constructor(
    readonly code: 'invalid_argument' | 'not_found' | 'already_exists' | 'failed_precondition',
    message: string,
  ) {
    super(message);
    this.name = 'DeploymentError';
  }
}

interface Entry {
  req: z.output<typeof createDeploymentSchema>;
  resource: DeploymentResource;
  gateway: Gateway | null;
  replicas: ReplicaHandle[];
  seq: number;
  /** Replicas being stopped on purpose (their exit is not a crash). */
  stopping: Set<ReplicaHandle>;
  /** Replica restarts after crashes. */
  restarts: number;
  /** The deployment's access token (gateway/auth.ts); held in memory only. */
  accessToken: string;
  /** The multi-LoRA addons loaded with `loadAddon`, kept in the row. */
  addons: AddonRecord[];
}

/** A multi-LoRA addon as the row keeps it: enough to load it again, never a credential. */
const addonSchema = z.object({
  /** The LoRA model requests name (accounts/{a}/models/{m}). */
  model: z.string().min(1),
  /** Its snapshot (PEFT files) in the deployment's hot-load bucket. */
  identity: z.string().min(1),
  /** The caller's fields for the addon (the control plane's deployedModel), handed back unchanged. */
  fields: z.record(z.string(), z.unknown()).default({}),
});
export type AddonRecord = z.output<typeof addonSchema>;

/** A deployment as a store row: its name, account and the registry's own (opaque) spec. */
export interface DeploymentRecord {
  name: string;
  account: string;
  spec: unknown;
}

/**
 * Where the registry keeps its deployments across restarts (the store implements it: one
 * row per deployment). Writes are upserts by name.
 */
export interface DeploymentRecords {
  putDeployment(record: DeploymentRecord): Promise<void>;
  deleteDeployment(name: string): Promise<boolean>;
  listDeployments(): Promise<DeploymentRecord[]>;
}

export interface DeploymentRegistryOptions {
  /**
   * Gateways require a credential on every call: the deployment's access token (always), or,
   * with `verifyKey` (the control plane's key check), an API key of the deployment's account.
   */
  auth?: { verifyKey?: KeyVerifier };
  /**
   * Insecure, for tests that call a bare registry's gateways directly: gateways answer any
   * caller. Never set by the platform; without it every gateway checks credentials.
   */
  openGateways?: boolean;
  /** Persist deployments (the control plane's store); see `restore()`. */
  records?: DeploymentRecords;
}

/** The persisted spec: what the deployment should be, never a credential. */
const specSchema = z.object({
  request: createDeploymentSchema.omit({ apiKey: true }),
  createTime: z.string(),
  // rows written before addons were kept have none
  addons: z.array(addonSchema).default([]),
});

function targetReplicas(min: number, max: number): number {
  return Math.max(min, Math.min(1, max));
}

export class DeploymentRegistry {
  private readonly entries = new Map<string, Entry>();
  constructor(
    private readonly launcher: ReplicaLauncher = new LocalReplicaLauncher(),
    private readonly options: DeploymentRegistryOptions = {},
  ) {}

  /**
   * The credential in-process callers (the control plane's proxy, rollouts, the SDK) present
   * to a deployment's gateway. Never returned over the API.
   */
  accessToken(name: string): string {
    const e = this.entries.get(name);
    if (!e) throw new DeploymentError('not_found', `${name} not found`);
    return e.accessToken;
  }

  /** `{authorization}` for a call to the deployment's gateway. */
  authHeaders(name: string): Record<string, string> {
    return { authorization: `Bearer ${this.accessToken(name)}` };
  }

  async create(input: CreateDeploymentRequest): Promise<DeploymentResource> {
    const entry = this.admit(input, new Date().toISOString());
    // The row first: a deployment the store does not hold must not be serving.
    try {
      await this.persist(entry);
    } catch (err) {
      this.entries.delete(entry.resource.name);
      throw err;
    }
    await this.open(entry, targetReplicas(entry.req.minReplicaCount, entry.req.maxReplicaCount));
    return this.get(entry.resource.name);
  }

  /**
   * Brings back every stored deployment this registry does not hold (the process restarted):
   * each gets a new gateway and its replica count, serving the base model, and ends READY
   * (its status says it was restored) or FAILED with the reason. A stored spec this version
   * cannot read is reported, not dropped. Resolves with the names restored.
   */
  async restore(): Promise<{ restored: string[]; failed: { name: string; reason: string }[] }> {
    const out = { restored: [] as string[], failed: [] as { name: string; reason: string }[] };
    if (!this.options.records) return out;
    for (const record of await this.options.records.listDeployments()) {
      if (this.entries.has(record.name)) continue;
      const spec = specSchema.safeParse(record.spec);
      if (!spec.success) {
        out.failed.push({
          name: record.name,
          reason: `stored spec unreadable: ${spec.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
        });
        continue;
      }
      let entry: Entry;
      try {
        entry = this.admit(spec.data.request, spec.data.createTime);
      } catch (err) {
        out.failed.push({ name: record.name, reason: (err as Error).message });
        continue;
      }
      entry.addons = spec.data.addons;
      await this.open(entry, targetReplicas(entry.req.minReplicaCount, entry.req.maxReplicaCount));
      if (entry.resource.state === 'READY') {
        entry.resource.status.reason =
          'restored at start-up: serving the base model until the next hot-load';
        // Addons come back from the bucket their files were copied to. One that cannot is
        // reported and stays in the row (a later restart or load may succeed), not dropped.
        const lost: string[] = [];
        for (const a of entry.addons) {
          try {
            await entry.gateway?.loadAddon(a.model, a.identity);
          } catch (err) {
            lost.push(`${a.model} (${(err as Error).message})`);
          }
        }
        if (lost.length === 0) out.restored.push(record.name);
        else {
          entry.resource.status.reason = `restored at start-up, but addons could not be loaded again: ${lost.join('; ')}`;
          out.failed.push({ name: record.name, reason: entry.resource.status.reason });
        }
      } else {
        entry.resource.status.reason = `could not be restored at start-up: ${entry.resource.status.reason}`;
        out.failed.push({ name: record.name, reason: entry.resource.status.reason });
      }
    }
    return out;
  }

  private async persist(e: Entry): Promise<void> {
    if (!this.options.records) return;
    const { apiKey: _secret, ...request } = e.req;
    await this.options.records.putDeployment({
      name: e.resource.name,
      account: e.req.account,
      spec: { request, createTime: e.resource.createTime, addons: e.addons },
    });
  }

  /** Validates a request and registers its entry (CREATING, nothing started yet). */
  private admit(input: CreateDeploymentRequest, createTime: string): Entry {
    const p = createDeploymentSchema.safeParse(input);
    if (!p.success)
      throw new DeploymentError(
        'invalid_argument',
        p.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
      );
    const req = p.data;
    if (req.minReplicaCount > req.maxReplicaCount)
      throw new DeploymentError(
        'invalid_argument',
        `minReplicaCount (${req.minReplicaCount}) exceeds maxReplicaCount (${req.maxReplicaCount})`,
      );
    const name = `accounts/${req.account}/deployments/${req.deploymentId}`;
    if (this.entries.has(name))
      throw new DeploymentError('already_exists', `${name} already exists`);
    const now = createTime;
    const entry: Entry = {
      req,
      gateway: null,
      replicas: [],
      seq: 0,
      stopping: new Set(),
      restarts: 0,
      accessToken: mintAccessToken(),
      addons: [],
      resource: {
        name,
        baseModel: req.baseModel,
        state: 'CREATING',
        minReplicaCount: req.minReplicaCount,
        maxReplicaCount: req.maxReplicaCount,
        replicaCount: 0,
        hotLoad: { ...req.hotLoad },
        gatewayUrl: null,
        createTime: now,
        updateTime: now,
        status: { reason: null, replicaRestarts: 0 },
        fields: structuredClone(req.fields),
      },
    };
    entry.resource.updateTime = new Date().toISOString();
    this.entries.set(name, entry);
    return entry;
  }

  /** Starts the gateway and `replicas` replicas; the entry ends READY, or FAILED with a reason. */
  private async open(entry: Entry, replicas: number): Promise<void> {
    const req = entry.req;
    try {
      entry.gateway = await Gateway.create({
        account: req.account,
        deploymentId: req.deploymentId,
        model: req.baseModel,
        baseModelDir: req.baseModelDir,
        bucketUrl: req.hotLoad.bucketUrl,
        transition: req.hotLoad.transitionType,
        replicas: [],
        apiKey: req.apiKey,
        ...(this.options.openGateways
          ? {}
          : { accessToken: entry.accessToken, verifyKey: this.options.auth?.verifyKey }),
      });
      entry.resource.gatewayUrl = await entry.gateway.listen();
      await this.resize(entry, replicas);
      entry.resource.state = 'READY';
      entry.resource.status.reason = null;
    } catch (err) {
      entry.resource.state = 'FAILED';
      entry.resource.status.reason = (err as Error).message;
    }
    entry.resource.updateTime = new Date().toISOString();
  }

  /** Replaces the caller's fields (they are not interpreted here). */
  async setFields(name: string, fields: Record<string, unknown>): Promise<DeploymentResource> {
    const e = this.entries.get(name);
    if (!e) throw new DeploymentError('not_found', `${name} not found`);
    e.resource.fields = structuredClone(fields);
    e.req.fields = structuredClone(fields);
    e.resource.updateTime = new Date().toISOString();
    await this.persist(e);
    return this.get(name);
  }

  /**
   * Loads a multi-LoRA addon (its files already in the deployment's hot-load bucket as the
   * snapshot `identity`) on the deployment's gateway and keeps it in the row, so `restore()`
   * loads it again. The row is written first: on a failed load it is written back without it.
   */
  async loadAddon(name: string, addon: AddonRecord): Promise<void> {
    const e = this.entries.get(name);
    if (!e?.gateway) throw new DeploymentError('not_found', `${name} has no gateway`);
    const record = addonSchema.parse(addon);
    const before = e.addons;
    e.addons = [...before.filter((a) => a.model !== record.model), structuredClone(record)];
    await this.persist(e);
    try {
      await e.gateway.loadAddon(record.model, record.identity);
    } catch (err) {
      e.addons = before;
      await this.persist(e);
      throw err;
    }
  }

  /** Unloads the addon `model` and removes it from the row; false if it was not kept. */
  async unloadAddon(name: string, model: string): Promise<boolean> {
    const e = this.entries.get(name);
    if (!e) throw new DeploymentError('not_found', `${name} not found`);
    const kept = e.addons.some((a) => a.model === model);
    e.addons = e.addons.filter((a) => a.model !== model);
    if (kept) await this.persist(e);
    const loaded = (await e.gateway?.unloadAddon(model)) ?? false;
    return kept || loaded;
  }

  /** The addons kept for a deployment (loaded or not: see the gateway's `loadedAddons`). */
  addons(name: string): AddonRecord[] {
    const e = this.entries.get(name);
    if (!e) throw new DeploymentError('not_found', `${name} not found`);
    return structuredClone(e.addons);
  }

  /**
   * Points a deployment at another hot-load bucket (or transition type): its replicas and
   * gateway are restarted on the base model, since what they served came from the old bucket,
   * and the ledger starts empty (the next hot-load must be a full snapshot).
   */
  async setHotLoad(
    name: string,
    hotLoad: { bucketUrl?: string; transitionType?: 'ASYNC' | 'SYNC' },
  ): Promise<DeploymentResource> {
    const e = this.entries.get(name);
    if (!e) throw new DeploymentError('not_found', `${name} not found`);
    if (e.resource.state !== 'READY')
      throw new DeploymentError('failed_precondition', `${name} is ${e.resource.state}`);
    if (hotLoad.bucketUrl?.endsWith('/'))
      throw new DeploymentError('invalid_argument', 'bucket URL must not end with a slash');
    e.resource.state = 'UPDATING';
    const replicas = e.replicas.length;
    await this.resize(e, 0);
    await e.gateway?.close();
    e.gateway = null;
    e.resource.gatewayUrl = null;
    e.req.hotLoad = { ...e.req.hotLoad, ...hotLoad };
    e.resource.hotLoad = { ...e.req.hotLoad };
    // the new gateway serves no addon, and their files are in the old bucket
    e.addons = [];
    await this.persist(e);
    await this.open(e, replicas);
    return this.get(name);
  }

  get(name: string): DeploymentResource {
    const e = this.entries.get(name);
    if (!e) throw new DeploymentError('not_found', `${name} not found`);
    return structuredClone(e.resource);
  }

  gateway(name: string): Gateway {
    const e = this.entries.get(name);
    if (!e?.gateway) throw new DeploymentError('not_found', `${name} has no gateway`);
    return e.gateway;
  }

  /** The replica processes of a deployment (id, url, pid). */
  replicas(name: string): { id: string; url: string; pid: number }[] {
    const e = this.entries.get(name);
    if (!e) throw new DeploymentError('not_found', `${name} not found`);
    return e.replicas.map((r) => ({ id: r.id, url: r.url, pid: r.pid }));
  }

  list(account: string): DeploymentResource[] {
    return [...this.entries.values()]
      .filter((e) => e.resource.name.startsWith(`accounts/${account}/deployments/`))
      .map((e) => structuredClone(e.resource));
  }

  private async stopReplica(e: Entry, r: ReplicaHandle): Promise<void> {
    e.stopping.add(r);
    await r.stop();
  }

  /** A replica that exits while it should be serving is replaced (and caught up). */
  private watch(e: Entry, r: ReplicaHandle): void {
    void r.exited.then(async (code) => {
      if (e.stopping.has(r) || !e.replicas.includes(r)) return;
      e.replicas = e.replicas.filter((x) => x !== r);
      e.gateway?.setReplicas(e.replicas.map((x) => ({ id: x.id, url: x.url, token: x.token })));
      e.resource.replicaCount = e.replicas.length;
      e.resource.status.reason = `replica ${r.id} exited (${code ?? 'signal'}); restarting it`;
      e.restarts++;
      e.resource.status.replicaRestarts = e.restarts;
      if (e.resource.state !== 'READY') return;
      try {
        await this.resize(
          e,
          targetReplicas(e.resource.minReplicaCount, e.resource.maxReplicaCount),
        );
        e.resource.status.reason = `replica ${r.id} exited (${code ?? 'signal'}); replaced`;
      } catch (err) {
        e.resource.status.reason = `replica ${r.id} exited and could not be replaced: ${(err as Error).message}`;
      }
      e.resource.updateTime = new Date().toISOString();
    });
  }

  private async resize(e: Entry, n: number): Promise<void> {
    while (e.replicas.length > n) {
      const r = e.replicas.pop() as ReplicaHandle;
      e.gateway?.setReplicas(e.replicas.map((x) => ({ id: x.id, url: x.url, token: x.token })));
      await this.stopReplica(e, r);
    }
    const started = await Promise.all(
      Array.from({ length: n - e.replicas.length }, () =>
        this.launcher.launch({
          replicaId: `${e.req.deploymentId}-r${e.seq++}`,
          baseModelDir: e.req.baseModelDir,
          bucketUrl: e.req.hotLoad.bucketUrl,
          transition: e.req.hotLoad.transitionType,
          ...e.req.replica,
        }),
      ),
    );
    // new replicas serve what the deployment serves before they take traffic
    try {
      for (const r of started) await e.gateway?.catchUp({ id: r.id, url: r.url, token: r.token });
    } catch (err) {
      await Promise.all(started.map((r) => this.stopReplica(e, r)));
      throw err;
    }
    e.replicas.push(...started);
    for (const r of started) this.watch(e, r);
    e.gateway?.setReplicas(e.replicas.map((r) => ({ id: r.id, url: r.url, token: r.token })));
    e.resource.replicaCount = e.replicas.length;
  }

  /** Sets min/max replicas; min = max = 0 scales to zero and keeps the resource. */
  async scale(
    name: string,
    counts: { minReplicaCount: number; maxReplicaCount: number },
  ): Promise<DeploymentResource> {
    const e = this.entries.get(name);
    if (!e) throw new DeploymentError('not_found', `${name} not found`);
    if (counts.minReplicaCount < 0 || counts.minReplicaCount > counts.maxReplicaCount)
      throw new DeploymentError(
        'invalid_argument',
        `need 0 <= minReplicaCount <= maxReplicaCount (got ${counts.minReplicaCount}, ${counts.maxReplicaCount})`,
      );
    if (e.resource.state !== 'READY')
      throw new DeploymentError('failed_precondition', `${name} is ${e.resource.state}`);
    e.resource.state = 'UPDATING';
    e.resource.minReplicaCount = counts.minReplicaCount;
    e.resource.maxReplicaCount = counts.maxReplicaCount;
    e.req.minReplicaCount = counts.minReplicaCount;
    e.req.maxReplicaCount = counts.maxReplicaCount;
    try {
      await this.persist(e);
      await this.resize(e, targetReplicas(counts.minReplicaCount, counts.maxReplicaCount));
      e.resource.state = 'READY';
    } catch (err) {
      e.resource.state = 'FAILED';
      e.resource.status.reason = (err as Error).message;
    }
    e.resource.updateTime = new Date().toISOString();
    return this.get(name);
  }

  async scaleToZero(name: string): Promise<DeploymentResource> {
    return this.scale(name, { minReplicaCount: 0, maxReplicaCount: 0 });
  }

  /** Deletes a deployment: its processes stop and its row goes. */
  async delete(name: string): Promise<void> {
    const e = this.entries.get(name);
    if (!e) throw new DeploymentError('not_found', `${name} not found`);
    e.resource.state = 'DELETING';
    await this.stop(e);
    await this.options.records?.deleteDeployment(name);
    e.resource.state = 'DELETED';
    this.entries.delete(name);
  }

  private async stop(e: Entry): Promise<void> {
    await this.resize(e, 0);
    await e.gateway?.close();
    e.gateway = null;
  }

  /**
   * Stops every deployment's processes. Stored deployments keep their rows (stopping the
   * platform is not deleting them): `restore()` brings them back on the next start.
   */
  async close(): Promise<void> {
    for (const [name, e] of [...this.entries]) {
      await this.stop(e);
      this.entries.delete(name);
    }
  }
}

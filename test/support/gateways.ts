/**
 * Deployment gateways for tests, set up one way everywhere:
 * - `startGatewayHarness`: the REST harness (test/control-plane/harness.ts) with a real
 *   DeploymentRegistry (real replica processes) behind its control plane, listening on
 *   loopback, with a caller over real HTTP; its gateways check credentials as a test asks.
 * - `startBucketDeployment`: one deployment of the bundled model on a registry, hot-loading
 *   from a fresh file:// bucket, READY, with the headers that route to it.
 */
import type { DeploymentRegistryOptions } from '../../src/deployments/index.js';
import { DeploymentRegistry, type DeploymentResource } from '../../src/deployments/index.js';
import type { Store } from '../../src/store/index.js';
import { type Harness, type Json, startHarness } from '../control-plane/harness.js';
import { baseDir, headers, makeBucket } from '../deployments/fixtures.js';

/**
 * Who a registry's gateways let in:
 * - `none`: anyone (`openGateways`; tests that are not about credentials);
 * - `access token`: only each deployment's own access token (the control plane presents it
 *   for the owner);
 * - `account keys`: as `temper up` builds it, also the owning account's API key (resolved by
 *   the harness's store).
 */
export type GatewayCredentials = 'none' | 'access token' | 'account keys';

/** The `auth` of a registry whose gateways take account keys that `store` resolves. */
export function accountKeyAuth(store: () => Store): DeploymentRegistryOptions['auth'] {
  return { verifyKey: async (key) => (await store().resolveApiKey(key))?.account ?? null };
}

export interface HttpAnswer {
  status: number;
  /** The body as JSON ({} when it is not JSON, e.g. server-sent events). */
  json: Json;
  text: string;
  headers: Headers;
}

export interface GatewayHarness extends Harness {
  registry: DeploymentRegistry;
  /** The control plane's origin on loopback (REST, `/inference`, `/hot_load`). */
  url: string;
  /** A request to `url + path` over real HTTP, as alice unless `key` says otherwise. */
  http(
    method: string,
    path: string,
    o?: {
      key?: string;
      /** false: send the key as `x-api-key` instead of `Authorization: Bearer`. */
      bearer?: boolean;
      body?: unknown;
      headers?: Record<string, string>;
    },
  ): Promise<HttpAnswer>;
  /** Closes the registry (its replicas) and then the harness. */
  close(): Promise<void>;
}

export async function startGatewayHarness(options: {
  credentials: GatewayCredentials;
}): Promise<GatewayHarness> {
  let harness: Harness | undefined;
  const store = () => {
    if (!harness) throw new Error('a gateway was called before the harness started');
    return harness.store;
  };
  const registry = new DeploymentRegistry(undefined, {
    ...(options.credentials === 'none' ? { openGateways: true } : {}),
    ...(options.credentials === 'account keys' ? { auth: accountKeyAuth(store) } : {}),
  });
  const h = await startHarness({ deployments: registry });
  harness = h;
  const url = await h.cp.listen(0, '127.0.0.1');
  const closeHarness = h.close.bind(h);
  return {
    ...h,
    registry,
    url,
    async http(method, path, o = {}) {
      const key = o.key ?? h.alice;
      const res = await fetch(`${url}${path}`, {
        method,
        headers: {
          ...(o.bearer === false ? { 'x-api-key': key } : { authorization: `Bearer ${key}` }),
          ...(o.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...o.headers,
        },
        ...(o.body === undefined ? {} : { body: JSON.stringify(o.body) }),
      });
      const text = await res.text();
      let json: Json = {};
      try {
        json = JSON.parse(text) as Json;
      } catch {
        // not JSON (server-sent events, an empty body)
      }
      return { status: res.status, json, text, headers: res.headers };
    },
    async close() {
      await registry.close();
      await closeHarness();
    },
  };
}

export interface BucketDeployment {
  dep: DeploymentResource;
  /** Its gateway's origin. */
  url: string;
  /** The routing headers of the deployment (model and deployment name). */
  headers: Record<string, string>;
  /** The hot-load bucket: write snapshots under `dir` (fixtures' writeFull / writeDelta). */
  bucket: { dir: string; url: string };
}

/** A READY deployment of the bundled model on `registry`, hot-loading from a new bucket. */
export async function startBucketDeployment(
  registry: DeploymentRegistry,
  options: {
    deploymentId: string;
    account?: string;
    replicas?: number;
    transitionType?: 'ASYNC' | 'SYNC';
  },
): Promise<BucketDeployment> {
  const bucket = await makeBucket();
  const replicas = options.replicas ?? 1;
  const dep = await registry.create({
    account: options.account ?? 'test',
    deploymentId: options.deploymentId,
    baseModel: 'accounts/temper/models/byte-lm-3m',
    baseModelDir: baseDir,
    hotLoad: {
      bucketType: 'MINIO',
      bucketUrl: bucket.url,
      transitionType: options.transitionType ?? 'ASYNC',
    },
    minReplicaCount: replicas,
    maxReplicaCount: replicas,
    // Replicas pace their steps a little, as a busy one would (the tests watch transitions).
    replica: { stepDelayMs: 1 },
  });
  if (dep.state !== 'READY') throw new Error(`${dep.name} is ${dep.state}, not READY`);
  return { dep, url: dep.gatewayUrl as string, headers: headers(dep.name), bucket };
}

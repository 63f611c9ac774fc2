/**
 * The control plane from settings: the store (migrated), the artifact store, a Temporal client
 * for the orchestrator, an in-process deployment registry (replicas are local processes of
 * this host), and the REST API listening. What `temper control-plane` runs on its own and
 * what `temper up` embeds next to the dev server and a worker.
 */
import { Client, Connection } from '@temporalio/client';
import type { Logger } from 'pino';
import { openObjectStore } from '../../checkpoints/object-store/index.js';
import { createControlPlane } from '../../control-plane/index.js';
import { DeploymentRegistry } from '../../deployments/registry.js';
import type { Store } from '../../store/index.js';
import { openStore } from '../../store/index.js';
import { TemporalOrchestrator } from '../../workflows/index.js';
import { loadSecretsKey } from './secrets-key.js';
import type { PlatformSettings } from './settings.js';

export interface ApiHost {
  apiUrl: string;
  /** The host's store connection (bootstrap writes keys through it). */
  store: Store;
  /** Stops the API, the deployments' replicas, the Temporal client and the store. */
  close(): Promise<void>;
}

/** Runs `steps` last first, each even if an earlier one failed; rethrows the first error. */
export async function closeAll(steps: (() => Promise<unknown>)[]): Promise<void> {
  let first: unknown;
  for (const step of [...steps].reverse()) {
    try {
      await step();
    } catch (err) {
      first ??= err;
    }
  }
  if (first) throw first;
}

export async function startApiHost(
  settings: PlatformSettings,
  opts: { host: string; logger: Logger },
): Promise<ApiHost> {
  const closers: (() => Promise<unknown>)[] = [];
  try {
    const secretsKey = await loadSecretsKey(settings, { create: false });
    const store = openStore(settings.storeUrl, secretsKey ? { secretsKey } : {});
    closers.push(() => store.close());
    await store.migrate();
    const artifacts = await openObjectStore(settings.artifactsUrl);
    const connection = await Connection.connect({ address: settings.temporalAddress });
    closers.push(() => connection.close());
    const client = new Client({ connection, namespace: settings.temporalNamespace });
    // gateways take the deployment's token (the proxy's) or a key of the owning account, which
    // they ask this process's store about (gateway/auth.ts); tml- keys are Tinker spellings
    const deployments = new DeploymentRegistry(undefined, {
      auth: {
        verifyKey: async (key) =>
          (await store.resolveApiKey(key.startsWith('tml-') ? key.slice(4) : key))?.account ?? null,
      },
      // each deployment is a row of the store, brought back below when the stack starts again
      records: store,
    });
    closers.push(() => deployments.close());
    const cp = createControlPlane({
      store,
      orchestrator: new TemporalOrchestrator(client, settings.taskQueue),
      artifacts,
      deployments,
      checkpointUrl: settings.checkpointsUrl,
      logger: opts.logger,
      // Every control-plane process of a stack holds the secrets key, so a download URL signed
      // by one is honoured by any other.
      ...(secretsKey ? { urlSigningKey: secretsKey.deriveKey('download urls') } : {}),
    });
    closers.push(() => cp.close());
    // Before serving: a client that saw its deployment before the restart finds it again.
    await cp.restoreDeployments();
    const apiUrl = await cp.listen(settings.apiPort, opts.host);
    let closing: Promise<void> | undefined;
    return {
      apiUrl,
      store,
      close() {
        closing ??= closeAll(closers);
        return closing;
      },
    };
  } catch (err) {
    await closeAll(closers).catch(() => undefined);
    throw err;
  }
}

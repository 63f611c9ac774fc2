/**
 * What a recipe's `run(config, clients)` is handed: the Training API service, the tracker and
 * a logger. `openRecipeClients` builds them from a recipe config — trainers as local pods
 * under `{log_path}/trainers` (dying with this process; checkpoints in
 * `{log_path}/checkpoints`, so a rerun finds them), or as rlorTrainerJobs of the control plane
 * at `base_url` (`temper up`).
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino, { type Logger } from 'pino';
import { DeploymentRegistry } from '../../deployments/index.js';
import { LocalProcessLauncher, ServiceClient, type ServiceConfig } from '../../sdk/index.js';
import { openTracker, type Tracker } from '../../tracking/index.js';
import { type RecipeBaseConfig, trackingOf } from './base-config.js';

export interface RecipeClients {
  service: ServiceClient;
  tracker: Tracker;
  log: Logger;
  /** Where the recipe's inference deployments live (the service's, and a teacher's). */
  deployments: DeploymentRegistry;
}

export interface OpenedClients extends RecipeClients {
  /** Closes the service (its pods and deployments) and whatever else was opened here. */
  close(): Promise<void>;
}

export interface OpenClientsOptions {
  /** Extra service settings a recipe needs (a deployment for RL). */
  service?: Partial<ServiceConfig>;
  log?: Logger;
  /** Recipe name, for the run's tags and default run name. */
  recipe: string;
}

export async function openRecipeClients(
  config: RecipeBaseConfig,
  o: OpenClientsOptions,
): Promise<OpenedClients> {
  const log = o.log ?? pino({ level: process.env.TEMPER_LOG_LEVEL ?? 'info' });
  // Tracking first: a refused W&B or an unreachable MLflow fails before any trainer starts.
  const tracker = await openTracker(trackingOf(config), {
    logDir: config.log_path,
    defaultRunName: `${o.recipe}-${config.log_path.split('/').filter(Boolean).pop() ?? 'run'}`,
    tags: { 'temper.recipe': o.recipe },
  });
  const remote = config.base_url !== undefined;
  const apiKey = config.api_key ?? process.env.TEMPER_API_KEY;
  const launcher = remote
    ? undefined
    : new LocalProcessLauncher({
        stateDir: join(config.log_path, 'trainers'),
        diesWithParent: true,
        checkpointUrl: pathToFileURL(join(config.log_path, 'checkpoints')).href,
        env: { ...process.env, TEMPER_LOG_LEVEL: process.env.TEMPER_POD_LOG_LEVEL ?? 'warn' },
      });
  const deployments = new DeploymentRegistry(undefined, { auth: {} });
  const service = ServiceClient.fromConfig(
    {
      baseModel: config.base_model,
      loraRank: config.lora_rank,
      account: config.account,
      ...(config.threads ? { threads: config.threads } : {}),
      ...(remote ? { baseUrl: config.base_url, apiKey } : {}),
      cleanupTrainerOnClose: true,
      cleanupDeploymentOnClose: 'delete',
      ...o.service,
    },
    { ...(launcher ? { launcher } : {}), deployments },
  );
  return {
    service,
    tracker,
    log,
    deployments,
    close: async () => {
      try {
        await service.close();
      } finally {
        await deployments.close();
      }
    },
  };
}

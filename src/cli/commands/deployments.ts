/**
 * `temper deployment create|get|list|delete|scale`, `temper load-lora|unload-lora` (multi-LoRA
 * addons on a deployment created with --enable-addons) and `temper ledger get|reset`: inference
 * deployments with hot-load settings and their hot-load ledger (hot-load.md).
 */
import type { Command } from 'commander';
import type { TemperApi } from '../api/client.js';
import { kindOf } from '../api/kinds.js';
import { deleteResource, getResource, itemPath, listAll } from '../api/resources.js';
import { deploymentSchema, resourceSchema } from '../api/schemas.js';
import { field, printList, printResource } from '../output.js';
import { type ApiFlags, apiAction, defined, integer, withApiFlags } from './common.js';

const kind = kindOf('deployment');

interface CreateFlags extends ApiFlags {
  deploymentId?: string;
  displayName?: string;
  minReplicaCount?: number;
  maxReplicaCount?: number;
  enableHotLoad?: boolean;
  enableAddons?: boolean;
  hotLoadBucketType?: string;
  hotLoadBucketUrl?: string;
  hotLoadTransitionType?: string;
  threads?: number;
}

export type DeploymentRequest = Omit<CreateFlags, keyof ApiFlags>;

export async function createDeployment(api: TemperApi, model: string, req: DeploymentRequest) {
  const body = defined({
    baseModel: model,
    displayName: req.displayName,
    minReplicaCount: req.minReplicaCount,
    maxReplicaCount: req.maxReplicaCount,
    enableHotLoad: req.enableHotLoad,
    enableAddons: req.enableAddons,
    hotLoadBucketType: req.hotLoadBucketType,
    hotLoadBucketUrl: req.hotLoadBucketUrl,
    hotLoadTransitionType: req.hotLoadTransitionType,
    replica: req.threads ? { threads: req.threads } : undefined,
  });
  return api.request('POST', api.collectionPath(kind.collection), deploymentSchema, {
    body,
    ...(req.deploymentId ? { query: { deploymentId: req.deploymentId } } : {}),
  });
}

function addCreate(deployment: Command): void {
  withApiFlags(deployment.command('create').argument('<model>', 'model id or name to serve'))
    .description('deploy a model: replicas behind an OpenAI-compatible gateway with hot-load')
    .option('--deployment-id <id>', 'id (default: random)')
    .option('--display-name <name>', 'display name')
    .option('--min-replica-count <n>', 'replicas kept running (default 0)', integer)
    .option('--max-replica-count <n>', 'replicas at most (default 1)', integer)
    .option('--enable-hot-load', 'accept hot-loaded snapshots (the default)')
    .option('--enable-addons', 'LoRA models of the base may be loaded on it (temper load-lora)')
    .option('--hot-load-bucket-type <type>', 'FW_HOSTED, S3, MINIO or NEBIUS')
    .option('--hot-load-bucket-url <url>', 'where snapshots are read from')
    .option('--hot-load-transition-type <type>', 'ASYNC or SYNC')
    .option('--threads <n>', 'engine threads per replica', integer)
    .action(
      apiAction<CreateFlags>(async ({ api, output }, [model], flags) => {
        printResource(await createDeployment(api, model!, flags), output);
      }),
    );
}

function addScale(deployment: Command): void {
  withApiFlags(deployment.command('scale').argument('<id>', 'deployment id or name'))
    .description('set the replica counts (0 and 0 scales to zero, keeping the deployment)')
    .option('--replica-count <n>', 'min and max replicas', integer)
    .option('--min-replica-count <n>', 'replicas kept running', integer)
    .option('--max-replica-count <n>', 'replicas at most', integer)
    .action(
      apiAction<
        ApiFlags & { replicaCount?: number; minReplicaCount?: number; maxReplicaCount?: number }
      >(async ({ api, output }, [id], f) => {
        const min = f.minReplicaCount ?? f.replicaCount;
        const max = f.maxReplicaCount ?? f.replicaCount ?? min;
        if (min === undefined || max === undefined)
          throw new Error('give --replica-count, or --min-replica-count and --max-replica-count');
        const body = { minReplicaCount: min, maxReplicaCount: max };
        const path = `${itemPath(api, kind, id!)}:scale`;
        printResource(await api.request('PATCH', path, resourceSchema, { body }), output);
      }),
    );
}

function addDeploymentCommand(program: Command): void {
  const deployment = program.command('deployment').description('inference deployments');
  addCreate(deployment);
  addScale(deployment);
  withApiFlags(deployment.command('get').argument('<id>', 'deployment id or name'))
    .description('show a deployment')
    .action(
      apiAction(async ({ api, output }, [id]) =>
        printResource(await getResource(api, kind, id!), output),
      ),
    );
  withApiFlags(deployment.command('list'))
    .description("list the account's deployments")
    .action(
      apiAction(async ({ api, output }) =>
        printList(await listAll(api, kind.collection), kind.columns, output),
      ),
    );
  withApiFlags(deployment.command('delete').argument('<id>', 'deployment id or name'))
    .description('delete a deployment (stops its replicas)')
    .action(
      apiAction(async ({ api, output }, [id]) => {
        await deleteResource(api, kind, id!);
        printResource({ name: itemPath(api, kind, id!).slice(4), deleted: true }, output);
      }),
    );
}

/** A model or deployment given as an id of the connection's account, or as a full name. */
function fullName(api: TemperApi, collection: string, ref: string): string {
  return itemPath(api, { collection }, ref).slice('/v1/'.length);
}

/** Loads the LoRA model on the deployment as an addon (POST deployedModels). */
export async function loadLora(api: TemperApi, model: string, deployment: string) {
  return api.request('POST', api.collectionPath('deployedModels'), resourceSchema, {
    body: {
      model: fullName(api, 'models', model),
      deployment: fullName(api, 'deployments', deployment),
    },
  });
}

/** Unloads the LoRA model from the deployment (DELETE its deployedModel). */
export async function unloadLora(api: TemperApi, model: string, deployment: string) {
  const [m, d] = [fullName(api, 'models', model), fullName(api, 'deployments', deployment)];
  const loaded = (await listAll(api, 'deployedModels')).find(
    (r) => r.model === m && r.deployment === d,
  );
  if (!loaded) throw new Error(`${m} is not loaded on ${d}`);
  await api.request('DELETE', `/v1/${loaded.name}`, resourceSchema.partial());
  return { name: loaded.name, deleted: true };
}

function addLoraCommands(program: Command): void {
  withApiFlags(program.command('load-lora').argument('<model>', 'LoRA model id or name'))
    .description('load a LoRA model as an addon on a deployment of its base (--enable-addons)')
    .requiredOption('--deployment <id>', 'deployment id or name')
    .action(
      apiAction<ApiFlags & { deployment: string }>(async ({ api, output }, [model], f) =>
        printResource(await loadLora(api, model!, f.deployment), output),
      ),
    );
  withApiFlags(program.command('unload-lora').argument('<model>', 'LoRA model id or name'))
    .description('unload a LoRA addon from a deployment')
    .requiredOption('--deployment <id>', 'deployment id or name')
    .action(
      apiAction<ApiFlags & { deployment: string }>(async ({ api, output }, [model], f) =>
        printResource(await unloadLora(api, model!, f.deployment), output),
      ),
    );
}

const ledgerColumns = [
  field('IDENTITY', 'identity'),
  field('TYPE', 'snapshot_type'),
  field('PREVIOUS', 'previous_snapshot_identity'),
  field('SIGNALLED', 'signal_time'),
  field('ERROR', 'load_error'),
];

function addLedgerCommand(program: Command): void {
  const ledger = program.command('ledger').description("a deployment's hot-load ledger");
  withApiFlags(ledger.command('get').argument('<deployment>', 'deployment id or name'))
    .description('the snapshots signalled to the deployment and how each replica loaded them')
    .action(
      apiAction(async ({ api, output }, [id]) => {
        const res = await api.request(
          'GET',
          `${itemPath(api, kind, id!)}/ledger`,
          resourceSchema.partial(),
        );
        if (output === 'json') return printResource(res, output);
        const rows = Array.isArray(res.snapshots)
          ? (res.snapshots as Record<string, unknown>[])
          : [];
        printList(rows, ledgerColumns, output);
      }),
    );
  withApiFlags(ledger.command('reset').argument('<deployment>', 'deployment id or name'))
    .description('forget the ledger (the next hot-load must be a full snapshot)')
    .action(
      apiAction(async ({ api, output }, [id]) => {
        const path = `${itemPath(api, kind, id!)}/ledger`;
        printResource(await api.request('DELETE', path, resourceSchema.partial()), output);
      }),
    );
}

export function addDeploymentCommands(program: Command): void {
  addDeploymentCommand(program);
  addLoraCommands(program);
  addLedgerCommand(program);
}

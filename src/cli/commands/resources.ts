/**
 * Verbs of single resource kinds: `dataset create`, `model list|get|delete`,
 * `checkpoint list|promote`, `evaluator create`, `secret create`.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from 'commander';
import type { TemperApi } from '../api/client.js';
import { checkpointColumns, kindOf } from '../api/kinds.js';
import { deleteResource, getResource, itemPath, listAll } from '../api/resources.js';
import { type Resource, resourceSchema } from '../api/schemas.js';
import { printList, printResource } from '../output.js';
import { type ApiFlags, apiAction, defined, withApiFlags } from './common.js';
import { addModelCreate } from './model-import.js';

/**
 * Creates the dataset and uploads the file. The server validates the upload and keeps no file
 * on failure; the dataset row is deleted here too, so a bad file leaves nothing at all.
 */
export async function createDataset(
  api: TemperApi,
  id: string,
  file: string,
  opts: { kind?: string; displayName?: string } = {},
): Promise<Resource> {
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) throw new Error(`${file} is not a file`);
  const dataset = defined({ userUploaded: {}, kind: opts.kind, displayName: opts.displayName });
  const created = await api.request('POST', api.collectionPath('datasets'), resourceSchema, {
    body: { datasetId: id, dataset },
  });
  try {
    return await api.upload(`/v1/${created.name}:upload`, file, resourceSchema);
  } catch (err) {
    await deleteResource(api, kindOf('dataset'), id).catch(() => undefined);
    throw err;
  }
}

function addDatasetCommand(program: Command): void {
  const dataset = program.command('dataset').description('datasets (JSONL files)');
  withApiFlags(
    dataset
      .command('create')
      .argument('<id>', 'dataset id')
      .argument('<path>', 'JSONL file to upload'),
  )
    .description('create a dataset and upload its file (validated; nothing is kept on failure)')
    .option('--kind <kind>', 'sft, dpo or rft (default: read off the first example)')
    .option('--display-name <name>', 'display name')
    .action(
      apiAction<ApiFlags & { kind?: string; displayName?: string }>(
        async ({ api, output }, [id, path], flags) => {
          printResource(await createDataset(api, id!, path!, flags), output);
        },
      ),
    );
}

/** Adds list/get/delete to the existing `temper model` command (which has `score`). */
export function addModelVerbs(model: Command): void {
  const kind = kindOf('model');
  addModelCreate(model);
  withApiFlags(model.command('list'))
    .description("list the account's models (--account temper: the bundled catalog)")
    .action(
      apiAction(async ({ api, output }) => {
        printList(await listAll(api, kind.collection), kind.columns, output);
      }),
    );
  withApiFlags(model.command('get').argument('<id>', 'model id or name'))
    .description('show a model')
    .action(
      apiAction(async ({ api, output }, [id]) => {
        printResource(await getResource(api, kind, id!), output);
      }),
    );
  withApiFlags(model.command('delete').argument('<id>', 'model id or name'))
    .description('delete a model and its files')
    .action(
      apiAction(async ({ api, output }, [id]) => {
        await deleteResource(api, kind, id!);
        printResource({ name: itemPath(api, kind, id!).slice(4), deleted: true }, output);
      }),
    );
}

const CHECKPOINT =
  /^accounts\/[a-z][a-z0-9-]*\/rlorTrainerJobs\/[a-z][a-z0-9-]*\/checkpoints\/[^/:?#]+$/;

function addCheckpointCommand(program: Command): void {
  const checkpoint = program.command('checkpoint').description("a trainer job's checkpoints");
  withApiFlags(
    checkpoint
      .command('list')
      .argument('<job>', 'trainer job (or, with --kind, managed job) id or name'),
  )
    .description(
      "list a job's checkpoints, oldest first (a managed job's: those of every pod it ran on)",
    )
    .option('--kind <kind>', 'the job kind: trainer, sftj, dpoj or rftj', 'trainer')
    .action(
      apiAction<ApiFlags & { kind?: string }>(async ({ api, output }, [job], flags) => {
        const kind = kindOf(flags.kind ?? 'trainer');
        const path = `${itemPath(api, kind, job!)}/checkpoints`;
        printList(await listAll(api, 'checkpoints', path), checkpointColumns, output);
      }),
    );
  withApiFlags(
    checkpoint
      .command('promote')
      .argument('<name>', 'accounts/{a}/rlorTrainerJobs/{job}/checkpoints/{checkpoint}'),
  )
    .description('promote a sampler checkpoint to a model')
    .requiredOption('--output-model <id>', 'id of the new model')
    .option('--base-model <model>', 'base model of a LoRA checkpoint')
    .action(
      apiAction<ApiFlags & { outputModel: string; baseModel?: string }>(
        async ({ api, output }, [name], flags) => {
          if (!CHECKPOINT.test(name!))
            throw new Error(
              `'${name}' is not a checkpoint name: accounts/{account}/rlorTrainerJobs/{job}/checkpoints/{checkpoint} (see \`temper checkpoint list\`)`,
            );
          const body = defined({ outputModelId: flags.outputModel, baseModel: flags.baseModel });
          printResource(
            await api.request('POST', `/v1/${name}:promote`, resourceSchema, { body }),
            output,
          );
        },
      ),
    );
}

function addEvaluatorCommand(program: Command): void {
  const evaluator = program.command('evaluator').description('RFT evaluators');
  withApiFlags(
    evaluator
      .command('create')
      .argument('<id>', 'evaluator id')
      .argument(
        '<file>',
        'JavaScript or TypeScript module whose export scores a rollout in [0, 1]',
      ),
  )
    .description('upload an evaluator module')
    .option('--entry-point <name>', 'the exported scoring function', 'default')
    .option('--display-name <name>', 'display name')
    .action(
      apiAction<ApiFlags & { entryPoint: string; displayName?: string }>(
        async ({ api, output }, [id, file], flags) => {
          const source = await readFile(file!, 'utf8');
          const evaluator = defined({
            source,
            sourceFilename: basename(file!),
            entryPoint: flags.entryPoint,
            displayName: flags.displayName,
          });
          const created = await api.request(
            'POST',
            api.collectionPath('evaluators'),
            resourceSchema,
            { body: { evaluatorId: id, evaluator } },
          );
          printResource(created, output);
        },
      ),
    );
}

function addSecretCommand(program: Command): void {
  const secret = program.command('secret').description('secrets evaluators get as env variables');
  withApiFlags(secret.command('create').argument('<key-name>', 'environment variable name'))
    .description('store a secret (its value is never shown again)')
    .requiredOption('--value <value>', 'the secret value')
    .option('--secret-id <id>', 'id (default: derived from the key name)')
    .action(
      apiAction<ApiFlags & { value: string; secretId?: string }>(
        async ({ api, output }, [keyName], flags) => {
          const body = defined({ keyName, value: flags.value, secretId: flags.secretId });
          printResource(
            await api.request('POST', api.collectionPath('secrets'), resourceSchema, { body }),
            output,
          );
        },
      ),
    );
}

export function addResourceCommands(program: Command): void {
  addDatasetCommand(program);
  addCheckpointCommand(program);
  addEvaluatorCommand(program);
  addSecretCommand(program);
}

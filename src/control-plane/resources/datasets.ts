/**
 * `datasets`: create (state UPLOADING), `:upload` (multipart field `file`, streamed to the
 * artifact store at accounts/{a}/datasets/{id}/data.jsonl, then validated; READY with the
 * validated exampleCount), get, list, delete, `:validate`, `preview` (dataset-preview.ts).
 *
 * The upload streams to a staging key, is validated on a worker thread (the file streams to
 * it: a large upload never blocks the event loop that answers other requests, and this thread
 * never holds the whole file), and only then becomes data.jsonl; a file
 * that fails validation is deleted and the dataset stays UPLOADING: nothing is left behind by
 * a bad upload. An uploaded dataset is immutable (a second upload is refused);
 * make a new dataset instead, as jobs refer to datasets by name.
 *
 * The kind (sft, dpo, rft) decides which checks apply and which jobs may use the dataset. It
 * may be given at create time; otherwise it is read off the first example: preference fields
 * make DPO, a conversation ending with an assistant turn SFT, anything else RFT prompts.
 * eval-protocol's uploads (`evalProtocol: {}`, rows of its EvaluationRow: `messages`,
 * `ground_truth` and its own metadata fields) are read the same way.
 */
import { createReadStream } from 'node:fs';
import { z } from 'zod';
import { catalogDatasetPath } from '../../catalog/bundled.js';
import { ObjectStoreError } from '../../checkpoints/object-store/types.js';
import { detectKind } from '../../datasets/detect-kind.js';
import { DatasetValidationError } from '../../datasets/errors.js';
import type { DatasetKind } from '../../datasets/validate.js';
import { validateOffThread } from '../../datasets/validate-off-thread.js';
import type { Deps } from '../context.js';
import { bodyObject, createId, parseBody } from '../http/body.js';
import { invalid, notFound, precondition, tooLarge } from '../http/errors.js';
import { randomId, resourceName } from '../http/ids.js';
import { listResponse, pageArray, parseListQuery } from '../http/paging.js';
import type { CollectionRoutes, RequestCtx } from '../http/router.js';
import { catalogDataset, catalogDatasets, isCatalog } from './catalog.js';
import { activeJobsUsing, type Body, deletePrefix, getRow, listRows, render } from './common.js';
import { previewLimit, previewLines } from './dataset-preview.js';
import { getDownloadEndpoint } from './downloads.js';

const KINDS = ['sft', 'dpo', 'rft'] as const;
const TRAINING_JOBS = [
  'supervisedFineTuningJobs',
  'dpoJobs',
  'orpoJobs',
  'reinforcementFineTuningJobs',
] as const;

const createSchema = z.strictObject({
  dataset: z
    .strictObject({
      displayName: z.string().max(200).optional(),
      description: z.string().max(2000).optional(),
      userUploaded: z.strictObject({}).optional(),
      exampleCount: z.coerce.number().int().nonnegative().optional(),
      kind: z.enum(KINDS).optional(),
      format: z.string().max(100).optional(),
      /** eval-protocol marks the datasets it uploads (EvaluationRow JSONL) with `{}`. */
      evalProtocol: z.looseObject({}).optional(),
    })
    .default({}),
});

const validateSchema = z.strictObject({
  kind: z.enum(KINDS).optional(),
  epochs: z.number().positive().optional(),
});

export const datasetDataKey = (name: string) => `${name}/data.jsonl`;

export { detectKind };

async function create(deps: Deps, ctx: RequestCtx) {
  const { id, body } = createId(ctx.req, 'dataset', { required: true });
  const { dataset } = parseBody(createSchema, body);
  const row = await deps.store.create<Body>('datasets', ctx.account, id, {
    displayName: dataset.displayName ?? id,
    ...(dataset.description ? { description: dataset.description } : {}),
    userUploaded: {},
    state: 'UPLOADING',
    kind: dataset.kind ?? null,
    exampleCount: dataset.exampleCount ?? 0,
    ...(dataset.format ? { format: dataset.format } : {}),
    ...(dataset.evalProtocol ? { evalProtocol: dataset.evalProtocol } : {}),
    createdBy: ctx.principal.keyId,
  });
  return render(row);
}

/** Streams the multipart `file` into the artifact store at `key`. */
async function receiveFile(deps: Deps, ctx: RequestCtx, key: string): Promise<void> {
  if (!ctx.req.isMultipart())
    throw invalid("upload the dataset as multipart/form-data with the JSONL file in field 'file'");
  const part = await ctx.req.file({ limits: { fileSize: deps.maxUploadBytes, files: 1 } });
  if (part?.fieldname !== 'file')
    throw invalid("multipart field 'file' is required (the JSONL dataset)");
  await deps.artifacts.put(key, part.file, { contentType: 'application/jsonl' });
  if (part.file.truncated)
    throw tooLarge(`dataset file is larger than the upload limit of ${deps.maxUploadBytes} bytes`);
}

/** The validated file becomes data.jsonl if-absent: of two concurrent uploads one wins. */
async function commitFile(deps: Deps, name: string, staging: string): Promise<void> {
  try {
    await deps.artifacts.put(datasetDataKey(name), await deps.artifacts.getStream(staging), {
      ifAbsent: true,
      contentType: 'application/jsonl',
    });
  } catch (err) {
    if (err instanceof ObjectStoreError && err.code === 'already_exists')
      throw precondition(`${name} was uploaded by another request first`);
    throw err;
  }
}

async function upload(deps: Deps, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, 'datasets', ctx.account, id);
  if (row.body.state === 'READY')
    throw precondition(
      `${row.name} is already uploaded (READY); datasets are immutable: create a new dataset for new data`,
    );
  // Streamed to a staging key first, so a bad or concurrent upload never touches data.jsonl.
  const staging = `${row.name}/staging/${randomId()}.jsonl`;
  let checked: Awaited<ReturnType<typeof validateOffThread>>;
  try {
    await receiveFile(deps, ctx, staging);
    checked = await validateOffThread(
      await deps.artifacts.getStream(staging),
      (row.body.kind as DatasetKind | null) ?? null,
    );
    await commitFile(deps, row.name, staging);
  } finally {
    await deps.artifacts.delete(staging);
  }
  const { kind, summary, sizeBytes } = checked;
  const ready = (body: Body) => ({
    ...body,
    state: 'READY',
    kind,
    exampleCount: summary.exampleCount,
    sizeBytes,
    summary,
  });
  try {
    return render(
      await deps.store.update<Body>('datasets', ctx.account, id, ready, {
        expectVersion: row.version,
      }),
    );
  } catch (err) {
    await deps.artifacts.delete(datasetDataKey(row.name));
    throw err;
  }
}

/** The stored file of a READY dataset (the repository's file for a catalog dataset), streamed. */
async function storedFile(deps: Deps, ctx: RequestCtx, id: string) {
  const name = resourceName(ctx.account, 'datasets', id);
  const bundled = isCatalog(ctx.account) ? await catalogDataset(name) : undefined;
  if (bundled)
    return {
      name,
      kind: bundled.kind as DatasetKind,
      stream: createReadStream(catalogDatasetPath(name)),
    };
  const row = await getRow(deps, 'datasets', ctx.account, id);
  if (row.body.state !== 'READY')
    throw precondition(`${name} has no file yet: upload it with :upload first`);
  return {
    name,
    kind: row.body.kind as DatasetKind,
    stream: await deps.artifacts.getStream(datasetDataKey(name)),
  };
}

/** The first lines of the stored file (dataset-preview.ts). */
async function preview(deps: Deps, ctx: RequestCtx, id: string) {
  const limit = previewLimit(ctx.req.query);
  const name = resourceName(ctx.account, 'datasets', id);
  if (isCatalog(ctx.account) && (await catalogDataset(name)))
    return {
      dataset: name,
      lines: await previewLines(createReadStream(catalogDatasetPath(name)), limit),
    };
  const row = await getRow(deps, 'datasets', ctx.account, id);
  if (row.body.state !== 'READY')
    throw precondition(`${name} has no file yet: upload it with :upload first`);
  const stream = await deps.artifacts.getStream(datasetDataKey(name));
  return { dataset: name, lines: await previewLines(stream, limit) };
}

/** Re-validates a stored dataset, optionally as another kind or for a number of epochs. */
async function validate(deps: Deps, ctx: RequestCtx, id: string) {
  const opts = parseBody(validateSchema, bodyObject(ctx.req));
  const file = await storedFile(deps, ctx, id);
  const kind = opts.kind ?? file.kind;
  try {
    const { summary } = await validateOffThread(
      file.stream,
      kind,
      opts.epochs ? { epochs: opts.epochs } : {},
    );
    return { dataset: file.name, valid: true, kind, exampleCount: summary.exampleCount, summary };
  } catch (err) {
    if (!(err instanceof DatasetValidationError)) throw err;
    const errors = err.issues.map((i) => ({
      code: i.code,
      line: i.line ?? null,
      detail: i.detail,
    }));
    return { dataset: file.name, valid: false, kind, message: err.message, errors };
  }
}

async function remove(deps: Deps, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, 'datasets', ctx.account, id);
  const users = await activeJobsUsing(
    deps,
    ctx.account,
    TRAINING_JOBS,
    ['dataset', 'evaluationDataset'],
    row.name,
  );
  if (users.length)
    throw precondition(
      `${row.name} is used by ${users.join(', ')}: wait for them to end or cancel them`,
    );
  await deps.store.delete('datasets', ctx.account, id);
  await deletePrefix(deps.artifacts, row.name);
  return {};
}

async function get(deps: Deps, ctx: RequestCtx, id: string) {
  if (isCatalog(ctx.account)) {
    const name = resourceName(ctx.account, 'datasets', id);
    const found = await catalogDataset(name);
    if (!found) throw notFound(`${name} not found`);
    return found;
  }
  return render(await getRow(deps, 'datasets', ctx.account, id));
}

async function list(deps: Deps, ctx: RequestCtx) {
  if (!isCatalog(ctx.account)) return listRows(deps, ctx, 'datasets');
  const page = pageArray(await catalogDatasets(), parseListQuery(ctx.req.query), ctx.account);
  return listResponse('datasets', page.items, page.nextPageToken);
}

export function datasetRoutes(deps: Deps): CollectionRoutes {
  return {
    collection: 'datasets',
    list: (ctx) => list(deps, ctx),
    create: (ctx) => create(deps, ctx),
    get: (ctx, id) => get(deps, ctx, id),
    delete: (ctx, id) => remove(deps, ctx, id),
    verbs: {
      upload: { handler: (ctx, id) => upload(deps, ctx, id) },
      validate: { access: 'read', handler: (ctx, id) => validate(deps, ctx, id) },
      // The stored file through a signed URL: downloads.ts.
      getDownloadEndpoint: {
        method: 'GET',
        handler: (ctx, id) => getDownloadEndpoint(deps, ctx, 'datasets', id),
      },
    },
    sub: [{ method: 'GET', path: 'preview', handler: (ctx, p) => preview(deps, ctx, p.id ?? '') }],
  };
}

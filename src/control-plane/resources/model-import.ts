/**
 * Models brought into an account (the documentation's Create Model, Get Model Upload Endpoint,
 * Validate Model Upload; `temper model create --from`):
 *
 *   POST models {modelId, model: {kind?, baseModel? | peftDetails.baseModel?, displayName?}}
 *     → UPLOADING. A LoRA adapter (`HF_PEFT_ADDON`) names its base model, which must be READY.
 *   POST models/{id}:getUploadEndpoint {filenameToSize} → one signed PUT URL per file, on this
 *     origin (the URL's token is the permission, for those files and sizes, for an hour).
 *   PUT the files: each streams into the checkpoint store at accounts/{a}/models/{id}/{file}
 *     (where promoted models live, so every reader of a model id finds imported ones the same
 *     way), never held whole in memory; a file larger than announced is cut off and removed.
 *   GET models/{id}:validateUpload → the directory checked by src/models (config.json by the
 *     engine's rules, weight names/shapes/dtypes from the safetensors headers, the tokenizer;
 *     an adapter against its base). Refused: every uploaded file and the row are removed, and
 *     the error lists each problem by file and field. Accepted: the model file (the same
 *     temper_model.json promotion writes) is written last and the model becomes READY; only
 *     then can a job or deployment use it (refs.resolveModel refuses any other state).
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { CATALOG_ACCOUNT, catalogModelDir } from '../../catalog/bundled.js';
import {
  directorySource,
  type ExportSource,
  storeSource,
} from '../../checkpoints/exports/index.js';
import type { ObjectStore } from '../../checkpoints/object-store/types.js';
import { MODEL_FILE, type PromotedModel } from '../../checkpoints/promotion.js';
import {
  type ModelProblem,
  validateAdapterDirectory,
  validateModelDirectory,
} from '../../models/index.js';
import type { Deps } from '../context.js';
import { bodyObject, createId, parseBody } from '../http/body.js';
import { invalid, precondition, tooLarge } from '../http/errors.js';
import { isValidId } from '../http/ids.js';
import type { RequestCtx } from '../http/router.js';
import {
  cappedBody,
  checkReceivedSize,
  checkSignedPut,
  grantUpload,
  uploadDenied,
  uploadGrantSchema,
} from '../http/signed-upload.js';
import { type Body, deletePrefix, getRow, render } from './common.js';
import { resolveModel } from './refs.js';

/** Where signed model-upload URLs point: outside /v1/, as the PUT carries no API key. */
export const MODEL_UPLOAD_PATH = '/uploads/models';
/** Largest single model file (a safetensors shard); whole models are several files. */
export const MAX_MODEL_FILE_BYTES = 64 * 1024 ** 3;

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

const createSchema = z.strictObject({
  model: z
    .strictObject({
      displayName: z.string().max(200).optional(),
      description: z.string().max(2000).optional(),
      // CUSTOM_MODEL is the documentation's name for an uploaded full model.
      kind: z
        .enum(['HF_BASE_MODEL', 'HF_PEFT_ADDON', 'CUSTOM_MODEL'], {
          error:
            'model.kind must be HF_BASE_MODEL (a full model) or HF_PEFT_ADDON (a LoRA adapter)',
        })
        .default('HF_BASE_MODEL'),
      baseModel: z.string().optional(),
      peftDetails: z.looseObject({ baseModel: z.string() }).optional(),
    })
    .default({ kind: 'HF_BASE_MODEL' }),
});

const uploadEndpointSchema = z.strictObject({
  filenameToSize: z.record(z.string(), z.union([z.number(), z.string()])),
  enableResumableUpload: z.boolean().optional(),
});

const pendingSchema = uploadGrantSchema.extend({
  files: z.record(z.string(), z.number()),
});
type Pending = z.output<typeof pendingSchema>;

const HIDDEN = ['upload'] as const;
const show = (row: Parameters<typeof render>[0]) => render(row, HIDDEN);

export async function createModel(deps: Deps, ctx: RequestCtx) {
  if (ctx.account === CATALOG_ACCOUNT)
    throw precondition(
      `accounts/${CATALOG_ACCOUNT} is the read-only catalog: create models in your account`,
    );
  const { id, body } = createId(ctx.req, 'model', { required: true });
  const { model } = parseBody(createSchema, body);
  const kind = model.kind === 'CUSTOM_MODEL' ? 'HF_BASE_MODEL' : model.kind;
  const baseValue = model.peftDetails?.baseModel ?? model.baseModel;
  let baseModel: string | null = null;
  if (kind === 'HF_PEFT_ADDON') {
    if (!baseValue)
      throw invalid('model.peftDetails.baseModel is required for a LoRA adapter (HF_PEFT_ADDON)');
    const base = await resolveModel(deps, ctx, baseValue, 'model.peftDetails.baseModel');
    if (base.kind !== 'HF_BASE_MODEL')
      throw invalid(
        `model.peftDetails.baseModel: ${base.name} is a LoRA adapter, not a full model`,
      );
    baseModel = base.name;
  } else if (baseValue)
    throw invalid('model.baseModel is only for a LoRA adapter: set model.kind to HF_PEFT_ADDON');
  const row = await deps.store.create<Body>('models', ctx.account, id, {
    displayName: model.displayName ?? id,
    ...(model.description ? { description: model.description } : {}),
    kind,
    state: 'UPLOADING',
    baseModel,
    peftDetails: baseModel ? { baseModel } : null,
    status: {
      code: 'OK',
      message: 'waiting for the files: :getUploadEndpoint, PUT each file, then :validateUpload',
    },
    createdBy: ctx.principal.keyId,
  });
  return show(row);
}

function requestOrigin(req: FastifyRequest): string {
  return `${req.protocol}://${req.host}`;
}

export async function getUploadEndpoint(deps: Deps, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, 'models', ctx.account, id);
  if (row.body.state !== 'UPLOADING')
    throw precondition(
      `${row.name} is ${String(row.body.state)}: only an UPLOADING model takes files`,
    );
  const input = parseBody(uploadEndpointSchema, bodyObject(ctx.req));
  const files: Record<string, number> = {};
  for (const [name, raw] of Object.entries(input.filenameToSize)) {
    if (!FILE_NAME.test(name) || name === MODEL_FILE)
      throw invalid(`filenameToSize: '${name}' is not a plain file name of the model directory`);
    const bytes = Number(raw);
    if (!Number.isInteger(bytes) || bytes < 0)
      throw invalid(`filenameToSize.${name}: '${raw}' is not a whole number of bytes`);
    if (bytes > MAX_MODEL_FILE_BYTES)
      throw tooLarge(`${name} is ${bytes} bytes; one file may be at most ${MAX_MODEL_FILE_BYTES}`);
    files[name] = bytes;
  }
  if (Object.keys(files).length === 0) throw invalid('filenameToSize names no file');
  const { token, grant } = grantUpload();
  const upload: Pending = { files, ...grant };
  await deps.store.update<Body>('models', ctx.account, id, (body) => ({ ...body, upload }), {
    expectVersion: row.version,
  });
  const origin = requestOrigin(ctx.req);
  const urls = Object.fromEntries(
    Object.keys(files).map((f) => [
      f,
      `${origin}${MODEL_UPLOAD_PATH}/${ctx.account}/${id}/${encodeURIComponent(f)}?token=${token}`,
    ]),
  );
  return { filenameToSignedUrls: urls };
}

/** The signed PUT of one file. */
async function receiveFile(deps: Deps, req: FastifyRequest) {
  const { account, id, filename } = req.params as { account: string; id: string; filename: string };
  const row =
    isValidId(account) && isValidId(id)
      ? await deps.store.get<Body>('models', account, id)
      : undefined;
  const pending = pendingSchema.safeParse(row?.body.upload);
  const bytes = pending.success ? pending.data.files[filename] : undefined;
  if (row?.body.state !== 'UPLOADING' || !pending.success || bytes === undefined)
    throw uploadDenied();
  checkSignedPut(req, pending.data, filename, bytes);
  const store = await deps.checkpoints();
  const key = `${row.name}/${filename}`;
  try {
    await store.put(key, cappedBody(req, bytes, filename));
    checkReceivedSize(filename, (await store.stat(key))?.size, bytes);
  } catch (err) {
    await store.delete(key).catch(() => undefined);
    throw err;
  }
  return {};
}

/** Where a READY model's files are: the catalog's directory, or the checkpoint store. */
export async function modelSource(deps: Deps, name: string): Promise<ExportSource> {
  if (name.startsWith(`accounts/${CATALOG_ACCOUNT}/`))
    return directorySource(catalogModelDir(name));
  return storeSource(await deps.checkpoints(), name);
}

function describeProblems(problems: ModelProblem[]): string {
  return problems.map((p) => `${p.file}: ${p.field}: ${p.message}`).join('; ');
}

/** sha256 and size of a stored file, streamed. */
async function digest(store: ObjectStore, key: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of await store.getStream(key)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

export async function validateUpload(deps: Deps, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, 'models', ctx.account, id);
  if (row.body.state === 'READY') return show(row);
  const pending = pendingSchema.safeParse(row.body.upload);
  if (!pending.success)
    throw precondition(
      `${row.name} has no files yet: :getUploadEndpoint, PUT each file, then :validateUpload`,
    );
  const store = await deps.checkpoints();
  const missing: string[] = [];
  for (const [f, bytes] of Object.entries(pending.data.files))
    if ((await store.stat(`${row.name}/${f}`))?.size !== bytes) missing.push(f);
  if (missing.length)
    throw precondition(`${row.name}: not uploaded yet (or incomplete): ${missing.join(', ')}`);

  const source = storeSource(store, row.name);
  const kind = String(row.body.kind);
  const baseModel = typeof row.body.baseModel === 'string' ? row.body.baseModel : null;
  let problems: ModelProblem[];
  let peftDetails: PromotedModel['peftDetails'] = null;
  if (kind === 'HF_PEFT_ADDON' && baseModel) {
    const base = await validateModelDirectory(await modelSource(deps, baseModel));
    if (!base.config)
      throw precondition(
        `base model ${baseModel} cannot be read: ${describeProblems(base.problems)}`,
      );
    problems = (await validateAdapterDirectory(source, base.config)).problems;
    if (problems.length === 0) {
      const cfg = JSON.parse((await source.read('adapter_config.json')).toString('utf8')) as {
        r?: number;
        lora_alpha?: number;
        target_modules?: string[] | string;
      };
      peftDetails = {
        baseModel,
        r: cfg.r ?? 0,
        loraAlpha: cfg.lora_alpha ?? null,
        targetModules: Array.isArray(cfg.target_modules)
          ? cfg.target_modules
          : cfg.target_modules
            ? [cfg.target_modules]
            : [],
      };
    }
  } else problems = (await validateModelDirectory(source)).problems;

  if (problems.length) {
    // Refused: nothing of the import stays behind.
    await deletePrefix(store, row.name);
    await deps.store.delete('models', ctx.account, id);
    throw invalid(
      `${row.name} cannot be run by temper, so it was not imported: ${describeProblems(problems)}`,
    );
  }
  const files: PromotedModel['files'] = [];
  for (const f of Object.keys(pending.data.files).sort())
    files.push({ path: f, ...(await digest(store, `${row.name}/${f}`)) });
  const model: PromotedModel = {
    name: row.name,
    state: 'READY',
    kind: kind === 'HF_PEFT_ADDON' ? 'HF_PEFT_ADDON' : 'HF_BASE_MODEL',
    peftDetails,
    baseModel,
    createTime: row.createTime,
    sourceCheckpoint: '',
    files,
  };
  // Written last: readers (resolveModel in the workflows) take its presence as "complete".
  await store.put(`${row.name}/${MODEL_FILE}`, `${JSON.stringify(model, null, 2)}\n`, {
    contentType: 'application/json',
  });
  const updated = await deps.store.update<Body>(
    'models',
    ctx.account,
    id,
    ({ upload: _, ...body }) => ({
      ...body,
      state: 'READY',
      peftDetails,
      files,
      status: { code: 'OK', message: '' },
    }),
    { expectVersion: row.version },
  );
  return show(updated);
}

/** The signed-URL PUT (outside /v1/: it carries a token, not an API key). */
export function modelUploadRoute(app: FastifyInstance, deps: Deps): void {
  app.register(async (scope) => {
    // Files stream straight to the checkpoint store.
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    scope.put(`${MODEL_UPLOAD_PATH}/:account/:id/:filename`, (req) => receiveFile(deps, req));
  });
}

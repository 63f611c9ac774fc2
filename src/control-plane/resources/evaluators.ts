/**
 * `evaluators`: get, list, delete, `:getSourceCode`, and two ways to create one, each landing
 * in the stored shape the evaluator runner reads (src/evaluators/index.ts):
 *
 * - Inline: `evaluator.source` holds one JavaScript or TypeScript module (`temper evaluator
 *   create`). Stored as an artifact at accounts/{a}/evaluators/{id}/{sourceFilename} with
 *   its sha256; ACTIVE at once.
 * - Uploaded (what eval-protocol's `ep upload` / `create rft` do through the Fireworks SDK):
 *   create (also at `evaluatorsV2`, the SDK's path) with an `entryPoint` such as
 *   `test_math.py::test_math_answer` → BUILDING; `:getUploadEndpoint` `{filenameToSize}`
 *   answers a signed URL on this origin; the client PUTs the project's `.tar.gz` there (no
 *   API key: the URL's token is the permission, for this file and size, for an hour);
 *   `:validateUpload` unpacks it into accounts/{a}/evaluators/{id}/files/{path} with each
 *   file's sha256 → ACTIVE, or BUILD_FAILED with the reason in `status` (which is what
 *   `create rft` polls for).
 *
 * Fields the Fireworks SDK sends that mean nothing here (commitHash, criteria) are accepted
 * and dropped; anything else unknown is refused. The row is created before any artifact is
 * written and every failure removes what it wrote, so a failed request leaves nothing behind.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { evaluatorAccessSchema, evaluatorFileSchema } from '../../evaluators/index.js';
import type { Deps } from '../context.js';
import { bodyObject, createId, parseBody } from '../http/body.js';
import { invalid, notFound, precondition, tooLarge } from '../http/errors.js';
import { isValidId, resourceName } from '../http/ids.js';
import type { CollectionRoutes, RequestCtx } from '../http/router.js';
import {
  cappedBody,
  checkReceivedSize,
  checkSignedPut,
  grantUpload,
  uploadDenied,
  uploadGrantSchema,
} from '../http/signed-upload.js';
import { activeJobsUsing, type Body, deletePrefix, getRow, listRows, render } from './common.js';
import { ArchiveError, readEvaluatorArchive } from './evaluator-archive.js';

export const MAX_SOURCE_BYTES = 1 << 20;
/** Where signed upload URLs point: outside /v1/, as the PUT carries no API key. */
export const EVALUATOR_UPLOAD_PATH = '/uploads/evaluators';

/** Never shown: the pending upload's token hash and the archive's internal key. */
const HIDDEN = ['upload'] as const;
const show = (row: Parameters<typeof render>[0]) => render(row, HIDDEN);

const sourceFilename = z
  .string()
  .regex(
    /^[A-Za-z0-9_-]+\.(ts|mts|js|mjs)$/,
    'must be a plain file name ending in .ts, .mts, .js or .mjs',
  );

/** `path/to/file.py::function` (eval-protocol's pytest node id) or `file.py`. */
const uploadedEntryPoint = z
  .string()
  .max(500)
  .refine((s) => {
    const [file, fn, extra] = s.split('::');
    return (
      extra === undefined &&
      evaluatorFileSchema.shape.path.safeParse(file).success &&
      /\.(py|m?js|m?ts)$/.test(file ?? '') &&
      (fn === undefined || /^[A-Za-z_][A-Za-z0-9_]*$/.test(fn))
    );
  }, 'must be "path/to/file.py::function" (or "file.py"), a relative path inside the uploaded folder');

const createSchema = z.strictObject({
  evaluator: z.strictObject({
    displayName: z.string().max(200).optional(),
    description: z.string().max(2000).optional(),
    /** Inline JS/TS module. */
    source: z
      .string()
      .min(1)
      .refine((s) => Buffer.byteLength(s) <= MAX_SOURCE_BYTES, 'must be at most 1 MiB')
      .optional(),
    sourceFilename: sourceFilename.optional(),
    /** Inline: the export that scores a rollout. Uploaded: `file.py::function`. */
    entryPoint: z.string().min(1).max(500).optional(),
    /** requirements.txt for an uploaded evaluator whose archive has none. */
    requirements: z
      .string()
      .max(64 * 1024)
      .optional(),
    defaultDataset: z.string().max(300).optional(),
    ...evaluatorAccessSchema.shape,
    // Sent by the Fireworks SDK; nothing here uses them.
    commitHash: z.string().max(200).optional(),
    criteria: z.array(z.unknown()).optional(),
  }),
});
type CreateInput = z.output<typeof createSchema>['evaluator'];

const uploadEndpointSchema = z.strictObject({
  filenameToSize: z.record(z.string(), z.union([z.string(), z.number()])),
  readMask: z.string().optional(),
});

const pendingUploadSchema = uploadGrantSchema.extend({
  filename: z.string(),
  bytes: z.number(),
  /** Set once the archive arrived. */
  archiveKey: z.string().optional(),
});
type PendingUpload = z.output<typeof pendingUploadSchema>;

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

function inlineFields(name: string, e: CreateInput & { source: string }) {
  const filename = e.sourceFilename ?? 'evaluator.ts';
  const entryPoint = e.entryPoint ?? 'default';
  if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(entryPoint))
    throw invalid(`evaluator.entryPoint: '${entryPoint}' is not an export name of the module`);
  return {
    body: {
      state: 'ACTIVE',
      language: /\.m?ts$/.test(filename) ? 'typescript' : 'javascript',
      sourceFilename: filename,
      entryPoint,
      sourceKey: `${name}/${filename}`,
      sourceBytes: Buffer.byteLength(e.source),
      sourceSha256: sha256(e.source),
    },
    source: e.source,
  };
}

function uploadedFields(e: CreateInput) {
  if (e.sourceFilename !== undefined)
    throw invalid('evaluator.sourceFilename goes with an inline evaluator.source');
  if (e.entryPoint === undefined)
    throw invalid(
      'evaluator.entryPoint is required for an uploaded evaluator (e.g. "test_math.py::test_math_answer"); or give the module inline as evaluator.source',
    );
  const entry = uploadedEntryPoint.safeParse(e.entryPoint);
  if (!entry.success)
    throw invalid(`evaluator.entryPoint: '${e.entryPoint}' ${entry.error.issues[0]!.message}`);
  return {
    state: 'BUILDING',
    status: {
      code: 'OK',
      message:
        'waiting for the source archive: :getUploadEndpoint, PUT the .tar.gz, then :validateUpload',
    },
    entryPoint: e.entryPoint,
    ...(e.requirements !== undefined ? { requirements: e.requirements } : {}),
  };
}

async function create(deps: Deps, ctx: RequestCtx) {
  const { id, body } = createId(ctx.req, 'evaluator', { required: true });
  const { evaluator: e } = parseBody(createSchema, body);
  const name = resourceName(ctx.account, 'evaluators', id);
  const inline = e.source !== undefined ? inlineFields(name, { ...e, source: e.source }) : null;
  const row = await deps.store.create<Body>('evaluators', ctx.account, id, {
    displayName: e.displayName ?? id,
    ...(e.description ? { description: e.description } : {}),
    ...(e.defaultDataset ? { defaultDataset: e.defaultDataset } : {}),
    allowNetwork: e.allowNetwork,
    ...(e.secrets ? { secrets: e.secrets } : {}),
    ...(inline ? inline.body : uploadedFields(e)),
    createdBy: ctx.principal.keyId,
  });
  if (inline) {
    try {
      await deps.artifacts.put(String(inline.body.sourceKey), inline.source, {
        contentType: 'text/plain; charset=utf-8',
      });
    } catch (err) {
      await deps.store.delete('evaluators', ctx.account, id);
      throw err;
    }
  }
  return show(row);
}

function requestOrigin(req: FastifyRequest): string {
  return `${req.protocol}://${req.host}`;
}

/** One signed PUT URL for the archive (a `.tar.gz`, at most the upload limit). */
async function getUploadEndpoint(deps: Deps, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, 'evaluators', ctx.account, id);
  if (row.body.sourceKey || row.body.state === 'ACTIVE')
    throw precondition(
      `${row.name} already has its source: delete it and create it again to upload a new version`,
    );
  const input = parseBody(uploadEndpointSchema, bodyObject(ctx.req));
  const entries = Object.entries(input.filenameToSize);
  if (entries.length !== 1)
    throw invalid(
      `filenameToSize must name exactly one file (the project's .tar.gz); it names ${entries.length}`,
    );
  const [filename, rawSize] = entries[0]!;
  if (!/^[A-Za-z0-9._-]{1,200}\.(tar\.gz|tgz)$/.test(filename))
    throw invalid(
      `filenameToSize: '${filename}' must be a plain file name ending in .tar.gz or .tgz`,
    );
  const bytes = Number(rawSize);
  if (!Number.isInteger(bytes) || bytes <= 0)
    throw invalid(
      `filenameToSize.${filename}: '${rawSize}' is not a positive whole number of bytes`,
    );
  if (bytes > deps.maxUploadBytes)
    throw tooLarge(
      `${filename} is ${bytes} bytes; the upload limit is ${deps.maxUploadBytes} bytes`,
    );
  const { token, grant } = grantUpload();
  const upload: PendingUpload = { filename, bytes, ...grant };
  await deps.store.update<Body>('evaluators', ctx.account, id, (body) => ({ ...body, upload }), {
    expectVersion: row.version,
  });
  const url = `${requestOrigin(ctx.req)}${EVALUATOR_UPLOAD_PATH}/${ctx.account}/${id}/${encodeURIComponent(filename)}?token=${token}`;
  return { filenameToSignedUrls: { [filename]: url } };
}

/** The signed PUT: the token in the URL is the permission (the client sends no API key). */
async function receiveArchive(deps: Deps, req: FastifyRequest) {
  const { account, id, filename } = req.params as { account: string; id: string; filename: string };
  const row =
    isValidId(account) && isValidId(id)
      ? await deps.store.get<Body>('evaluators', account, id)
      : undefined;
  const pending = pendingUploadSchema.safeParse(row?.body.upload);
  if (!row || !pending.success || pending.data.filename !== filename) throw uploadDenied();
  const upload = pending.data;
  checkSignedPut(req, upload, filename, upload.bytes);
  const key = `${row.name}/upload/${filename}`;
  try {
    await deps.artifacts.put(key, cappedBody(req, upload.bytes, filename), {
      contentType: 'application/gzip',
    });
    checkReceivedSize(filename, (await deps.artifacts.stat(key))?.size, upload.bytes);
    await deps.store.update<Body>(
      'evaluators',
      account,
      id,
      (body) => ({ ...body, upload: { ...upload, archiveKey: key } }),
      { expectVersion: row.version },
    );
  } catch (err) {
    await deps.artifacts.delete(key);
    throw err;
  }
  return {};
}

const LANGUAGE_OF: [RegExp, string][] = [
  [/\.py$/, 'python'],
  [/\.m?js$/, 'javascript'],
  [/\.m?ts$/, 'typescript'],
];

/** The archive as stored files (entry file, requirements.txt, no Dockerfile), or why not. */
function unpack(archive: Buffer, body: Body) {
  const files = readEvaluatorArchive(archive);
  const entryPoint = String(body.entryPoint);
  const entryFile = entryPoint.split('::')[0]!;
  const paths = new Set(files.map((f) => f.path));
  if (paths.has('Dockerfile'))
    throw new ArchiveError(
      'the upload has a Dockerfile, and this temper has no container engine (Docker or Podman) to build Dockerfile evaluators: remove the Dockerfile to run on the Python environment built from requirements.txt',
    );
  if (!paths.has(entryFile))
    throw new ArchiveError(
      `the entry point ${entryPoint} names ${entryFile}, which is not in the upload (it has ${[...paths].slice(0, 10).join(', ')}${paths.size > 10 ? ', ...' : ''})`,
    );
  if (!paths.has('requirements.txt'))
    files.push({ path: 'requirements.txt', bytes: Buffer.from(String(body.requirements ?? '')) });
  const language = LANGUAGE_OF.find(([re]) => re.test(entryFile))![1];
  return { files, language };
}

async function validateUpload(deps: Deps, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, 'evaluators', ctx.account, id);
  const pending = pendingUploadSchema.safeParse(row.body.upload);
  if (!pending.success || !pending.data.archiveKey)
    throw precondition(
      `${row.name} has no uploaded archive: PUT it to the URL :getUploadEndpoint gave, then call :validateUpload`,
    );
  const archiveKey = pending.data.archiveKey;
  let unpacked: ReturnType<typeof unpack>;
  try {
    unpacked = unpack(await deps.artifacts.get(archiveKey), row.body);
  } catch (err) {
    if (!(err instanceof ArchiveError)) throw err;
    // What `create rft` polls for: the evaluator failed to build, and why.
    await deps.store.update<Body>('evaluators', ctx.account, id, ({ upload: _, ...body }) => ({
      ...body,
      state: 'BUILD_FAILED',
      status: { code: 'INVALID_ARGUMENT', message: err.message },
    }));
    await deps.artifacts.delete(archiveKey);
    throw invalid(`${row.name}: ${err.message}`);
  }
  const prefix = `${row.name}/files`;
  await deletePrefix(deps.artifacts, prefix);
  const files: z.input<typeof evaluatorFileSchema>[] = [];
  try {
    for (const f of unpacked.files) {
      const key = `${prefix}/${f.path}`;
      await deps.artifacts.put(key, f.bytes);
      files.push({ path: f.path, key, sha256: sha256(f.bytes), bytes: f.bytes.length });
    }
    const updated = await deps.store.update<Body>(
      'evaluators',
      ctx.account,
      id,
      ({ upload: _, ...body }) => ({
        ...body,
        state: 'ACTIVE',
        status: { code: 'OK', message: '' },
        language: unpacked.language,
        files,
      }),
      { expectVersion: row.version },
    );
    await deps.artifacts.delete(archiveKey);
    return show(updated);
  } catch (err) {
    await deletePrefix(deps.artifacts, prefix);
    throw err;
  }
}

async function remove(deps: Deps, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, 'evaluators', ctx.account, id);
  const users = await activeJobsUsing(
    deps,
    ctx.account,
    ['reinforcementFineTuningJobs'],
    ['evaluator'],
    row.name,
  );
  if (users.length)
    throw precondition(
      `${row.name} is used by ${users.join(', ')}: wait for them to end or cancel them`,
    );
  await deps.store.delete('evaluators', ctx.account, id);
  await deletePrefix(deps.artifacts, row.name);
  return {};
}

/** An inline evaluator's module; an uploaded one's files (text), by path. */
async function sourceCode(deps: Deps, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, 'evaluators', ctx.account, id);
  if (row.body.sourceKey) {
    const source = (await deps.artifacts.get(String(row.body.sourceKey))).toString('utf8');
    return { name: row.name, sourceFilename: row.body.sourceFilename, source };
  }
  const files = z.array(evaluatorFileSchema).safeParse(row.body.files);
  if (!files.success)
    throw notFound(`${row.name} has no source yet (state ${String(row.body.state)})`);
  return {
    name: row.name,
    entryPoint: row.body.entryPoint,
    files: await Promise.all(
      files.data.map(async (f) => ({
        path: f.path,
        sha256: f.sha256,
        content: (await deps.artifacts.get(f.key)).toString('utf8'),
      })),
    ),
  };
}

export function evaluatorRoutes(deps: Deps): CollectionRoutes {
  return {
    collection: 'evaluators',
    list: (ctx) => listRows(deps, ctx, 'evaluators', show),
    create: (ctx) => create(deps, ctx),
    get: async (ctx, id) => show(await getRow(deps, 'evaluators', ctx.account, id)),
    delete: (ctx, id) => remove(deps, ctx, id),
    verbs: {
      getSourceCode: { method: 'GET', handler: (ctx, id) => sourceCode(deps, ctx, id) },
      getUploadEndpoint: { handler: (ctx, id) => getUploadEndpoint(deps, ctx, id) },
      validateUpload: { handler: (ctx, id) => validateUpload(deps, ctx, id) },
    },
  };
}

/** `POST evaluatorsV2`: the Fireworks SDK's create path; the same create. */
export function evaluatorV2Routes(deps: Deps): CollectionRoutes {
  return { collection: 'evaluatorsV2', create: (ctx) => create(deps, ctx) };
}

/** The signed-URL PUT (registered outside /v1/: it carries a token, not an API key). */
export function evaluatorUploadRoute(app: FastifyInstance, deps: Deps): void {
  app.register(async (scope) => {
    // The archive streams straight to the artifact store.
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    scope.put(`${EVALUATOR_UPLOAD_PATH}/:account/:id/:filename`, (req) =>
      receiveArchive(deps, req),
    );
  });
}

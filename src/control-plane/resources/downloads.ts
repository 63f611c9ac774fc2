/**
 * Downloads of a READY model's or dataset's files (the documentation's Get Model / Get Dataset
 * Download Endpoint), one mechanism for both:
 *
 *   GET models/{id}:getDownloadEndpoint (or datasets/{id}:…) → {filenameToSignedUrls,
 *     filenameToSize, filenameToSha256, expireTime}: one signed GET URL per file, on this origin,
 *     valid for an hour (http/signed-download.ts). A LoRA adapter lists the adapter's files and
 *     names its `baseModel`, whose files come from that model's own :getDownloadEndpoint.
 *   GET /downloads/accounts/{a}/{models|datasets}/{id}/{file}?expires=…&token=… → the file,
 *     streamed from where the resource keeps it (the checkpoint store for models, the artifact
 *     store for datasets, the repository for the public catalog), never held whole in memory.
 *     `Range: bytes=N-` resumes from byte N (206).
 */
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { catalogDatasetPath, catalogModelDir } from '../../catalog/bundled.js';
import { MODEL_FILE, readModel } from '../../checkpoints/promotion.js';
import { fileDigest } from '../../util/file-digest.js';
import type { Deps } from '../context.js';
import { ApiError, notFound, precondition } from '../http/errors.js';
import { isValidId, resourceName } from '../http/ids.js';
import type { RequestCtx } from '../http/router.js';
import { checkSignedGet, downloadDenied, signDownload } from '../http/signed-download.js';
import { catalogDataset, catalogModel, isCatalog } from './catalog.js';
import { getRow } from './common.js';
import { datasetDataKey } from './datasets.js';

/** Where signed download URLs point: outside /v1/, as the GET carries no API key. */
export const DOWNLOAD_PATH = '/downloads';

/** The file name a dataset's one file downloads as. */
export const DATASET_FILE = 'data.jsonl';

type Downloadable = 'models' | 'datasets';

interface DownloadFile {
  path: string;
  size: number;
  /** Known for models (recorded at import or promotion) and catalog files. */
  sha256?: string;
}

interface Found {
  name: string;
  incarnation: string;
  files: DownloadFile[];
  /** A LoRA adapter's base model. */
  baseModel?: string;
  /** The file from byte `start` on. */
  open(path: string, start: number): Promise<Readable>;
}

// Catalog files change only with a new release; their digests are computed once per process.
const catalogDigests = new Map<string, Promise<string>>();

function fileSha256(path: string): Promise<string> {
  let digest = catalogDigests.get(path);
  if (!digest) {
    digest = fileDigest(path).then((d) => d.sha256);
    catalogDigests.set(path, digest);
  }
  return digest;
}

const fromFile = (path: string) => async (_: string, start: number) =>
  createReadStream(path, { start, highWaterMark: 1 << 20 });

/** Drops the first `n` bytes of a stream (a resumed download from an object store). */
function skip(stream: Readable, n: number): Readable {
  if (n === 0) return stream;
  let left = n;
  return stream.pipe(
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        if (left >= chunk.length) {
          left -= chunk.length;
          return done();
        }
        const rest = chunk.subarray(left);
        left = 0;
        done(null, rest);
      },
    }),
  );
}

async function catalogModelFiles(name: string): Promise<Found> {
  const dir = catalogModelDir(name);
  const files: DownloadFile[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile() || entry.name === MODEL_FILE) continue;
    const path = join(dir, entry.name);
    files.push({ path: entry.name, size: (await stat(path)).size, sha256: await fileSha256(path) });
  }
  return {
    name,
    incarnation: '',
    files: files.sort((a, b) => a.path.localeCompare(b.path)),
    open: (p, start) => fromFile(join(dir, p))(p, start),
  };
}

/** A READY model's files; `missing` is the error for a model that cannot be downloaded. */
async function findModel(
  deps: Deps,
  account: string,
  id: string,
  missing: (message: string) => Error,
): Promise<Found> {
  const name = resourceName(account, 'models', id);
  if (isCatalog(account)) {
    if (!(await catalogModel(name))) throw missing(`${name} not found`);
    return catalogModelFiles(name);
  }
  const row = isValidId(id) ? await deps.store.get('models', account, id) : undefined;
  if (!row) throw missing(`${name} not found`);
  const state = String((row.body as { state?: unknown }).state);
  if (state !== 'READY') throw missing(`${name} is ${state}: only a READY model can be downloaded`);
  const store = await deps.checkpoints();
  const model = await readModel(store, account, id);
  if (!model) throw missing(`${name} has no files in the checkpoint store`);
  return {
    name,
    incarnation: row.createTime,
    files: model.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 })),
    ...(model.kind === 'HF_PEFT_ADDON' && model.baseModel ? { baseModel: model.baseModel } : {}),
    open: async (p, start) => skip(await store.getStream(`${name}/${p}`), start),
  };
}

async function findDataset(
  deps: Deps,
  account: string,
  id: string,
  missing: (message: string) => Error,
): Promise<Found> {
  const name = resourceName(account, 'datasets', id);
  if (isCatalog(account)) {
    if (!(await catalogDataset(name))) throw missing(`${name} not found`);
    const path = catalogDatasetPath(name);
    return {
      name,
      incarnation: '',
      files: [
        { path: DATASET_FILE, size: (await stat(path)).size, sha256: await fileSha256(path) },
      ],
      open: fromFile(path),
    };
  }
  const row = isValidId(id) ? await deps.store.get('datasets', account, id) : undefined;
  if (!row) throw missing(`${name} not found`);
  const key = datasetDataKey(name);
  const size = (await deps.artifacts.stat(key))?.size;
  if ((row.body as { state?: unknown }).state !== 'READY' || size === undefined)
    throw missing(`${name} has no file yet: upload it with :upload first`);
  return {
    name,
    incarnation: row.createTime,
    files: [{ path: DATASET_FILE, size }],
    open: async (_, start) => skip(await deps.artifacts.getStream(key), start),
  };
}

const finders = { models: findModel, datasets: findDataset } as const;

/** `GET {models|datasets}/{id}:getDownloadEndpoint`. */
export async function getDownloadEndpoint(
  deps: Deps,
  ctx: RequestCtx,
  collection: Downloadable,
  id: string,
) {
  // Errors of an account's own resource: NOT_FOUND as a plain GET would say, FAILED_PRECONDITION
  // for one that exists but has no files yet.
  if (!isCatalog(ctx.account)) await getRow(deps, collection, ctx.account, id);
  const found = await finders[collection](deps, ctx.account, id, (m) =>
    m.endsWith('not found') ? notFound(m) : precondition(m),
  );
  const origin = `${ctx.req.protocol}://${ctx.req.host}`;
  const urls: Record<string, string> = {};
  const sizes: Record<string, number> = {};
  const digests: Record<string, string> = {};
  let expireTime = '';
  for (const f of found.files) {
    const signed = signDownload(deps.urlSigningKey, {
      name: found.name,
      incarnation: found.incarnation,
      file: f.path,
    });
    expireTime = signed.expireTime;
    urls[f.path] =
      `${origin}${DOWNLOAD_PATH}/${found.name}/${encodeURIComponent(f.path)}?${signed.query}`;
    sizes[f.path] = f.size;
    if (f.sha256) digests[f.path] = f.sha256;
  }
  return {
    filenameToSignedUrls: urls,
    filenameToSize: sizes,
    filenameToSha256: digests,
    expireTime,
    // A LoRA adapter: these are the adapter's files; the base model's come from its own
    // :getDownloadEndpoint.
    ...(found.baseModel ? { baseModel: found.baseModel } : {}),
  };
}

/** `Range: bytes=N-` → N; no header → 0; anything else is refused. */
function rangeStart(req: FastifyRequest, size: number): number | undefined {
  const range = req.headers.range;
  if (range === undefined) return undefined;
  const m = /^bytes=(\d+)-$/.exec(range);
  if (!m || Number(m[1]) > size)
    throw new ApiError(
      'INVALID_ARGUMENT',
      `Range '${range}' is not supported: send bytes=N- with N at most the file's ${size} bytes`,
    );
  return Number(m[1]);
}

async function sendFile(deps: Deps, req: FastifyRequest, reply: FastifyReply) {
  const { account, collection, id, filename } = req.params as Record<string, string>;
  if (!isValidId(account ?? '') || !(collection === 'models' || collection === 'datasets'))
    throw downloadDenied();
  // Whatever is wrong with the resource, the answer is the same refusal: an unsigned caller
  // learns nothing about what exists.
  const found = await finders[collection](deps, account!, id!, () => downloadDenied());
  const file = found.files.find((f) => f.path === filename);
  checkSignedGet(deps.urlSigningKey, req, {
    name: found.name,
    incarnation: found.incarnation,
    file: filename!,
  });
  if (!file) throw downloadDenied();
  const start = rangeStart(req, file.size);
  let body: Readable;
  try {
    body = await found.open(file.path, start ?? 0);
  } catch {
    throw notFound(`${found.name}/${file.path} is no longer stored`);
  }
  reply.header('content-type', 'application/octet-stream');
  reply.header('accept-ranges', 'bytes');
  reply.header('content-length', String(file.size - (start ?? 0)));
  if (start !== undefined) {
    reply.code(206);
    reply.header('content-range', `bytes ${start}-${file.size - 1}/${file.size}`);
  }
  return reply.send(body);
}

/** The signed-URL GET (outside /v1/: it carries a token, not an API key). */
export function downloadRoute(app: FastifyInstance, deps: Deps): void {
  app.get(`${DOWNLOAD_PATH}/accounts/:account/:collection/:id/:filename`, (req, reply) =>
    sendFile(deps, req, reply),
  );
}

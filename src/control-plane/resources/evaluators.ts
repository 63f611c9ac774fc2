/**
 * `evaluators`: create with the source inline (a JavaScript or TypeScript module that
 * scores a rollout in [0, 1]), get, list, delete, and `:getSourceCode`. The source is
 * stored as an artifact at accounts/{a}/evaluators/{id}/{sourceFilename}; the row records
 * its key, size and sha256 so a job can check it reads what was uploaded.
 *
 * The row is created first and the source written second (undone if the write fails), so an
 * id that is taken never has its source overwritten and a failure leaves nothing.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Deps } from '../context.js';
import { createId, parseBody } from '../http/body.js';
import { precondition } from '../http/errors.js';
import type { CollectionRoutes, RequestCtx } from '../http/router.js';
import { activeJobsUsing, type Body, deletePrefix, getRow, listRows, render } from './common.js';

export const MAX_SOURCE_BYTES = 1 << 20;

const createSchema = z.strictObject({
  evaluator: z.strictObject({
    displayName: z.string().max(200).optional(),
    description: z.string().max(2000).optional(),
    source: z
      .string()
      .min(1)
      .refine((s) => Buffer.byteLength(s) <= MAX_SOURCE_BYTES, 'must be at most 1 MiB'),
    sourceFilename: z
      .string()
      .regex(
        /^[A-Za-z0-9_-]+\.(ts|mts|js|mjs)$/,
        'must be a plain file name ending in .ts, .mts, .js or .mjs',
      )
      .default('evaluator.ts'),
    /** The exported function that scores a rollout. */
    entryPoint: z
      .string()
      .regex(/^[A-Za-z_$][A-Za-z0-9_$]*$/)
      .default('default'),
  }),
});

async function create(deps: Deps, ctx: RequestCtx) {
  const { id, body } = createId(ctx.req, 'evaluator', { required: true });
  const { evaluator: e } = parseBody(createSchema, body);
  const name = `accounts/${ctx.account}/evaluators/${id}`;
  const sourceKey = `${name}/${e.sourceFilename}`;
  const row = await deps.store.create<Body>('evaluators', ctx.account, id, {
    displayName: e.displayName ?? id,
    ...(e.description ? { description: e.description } : {}),
    state: 'ACTIVE',
    language: /\.m?ts$/.test(e.sourceFilename) ? 'typescript' : 'javascript',
    sourceFilename: e.sourceFilename,
    entryPoint: e.entryPoint,
    sourceKey,
    sourceBytes: Buffer.byteLength(e.source),
    sourceSha256: createHash('sha256').update(e.source).digest('hex'),
    createdBy: ctx.principal.keyId,
  });
  try {
    await deps.artifacts.put(sourceKey, e.source, { contentType: 'text/plain; charset=utf-8' });
  } catch (err) {
    await deps.store.delete('evaluators', ctx.account, id);
    throw err;
  }
  return render(row);
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

export function evaluatorRoutes(deps: Deps): CollectionRoutes {
  return {
    collection: 'evaluators',
    list: (ctx) => listRows(deps, ctx, 'evaluators'),
    create: (ctx) => create(deps, ctx),
    get: async (ctx, id) => render(await getRow(deps, 'evaluators', ctx.account, id)),
    delete: (ctx, id) => remove(deps, ctx, id),
    verbs: {
      getSourceCode: {
        method: 'GET',
        handler: async (ctx, id) => {
          const row = await getRow(deps, 'evaluators', ctx.account, id);
          const source = (await deps.artifacts.get(String(row.body.sourceKey))).toString('utf8');
          return { name: row.name, sourceFilename: row.body.sourceFilename, source };
        },
      },
    },
  };
}

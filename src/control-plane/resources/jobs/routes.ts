/**
 * What every job collection shares: create (store the job as JOB_STATE_PENDING with every
 * default resolved, then orchestrator.start), get, list, delete, `:cancel`, `:resume` and
 * `GET {id}/metrics` (JSON rows, JSON lines, CSV, or columns: metric-columns.ts).
 *
 * Choices:
 * - If the orchestrator cannot start the job, the row is deleted again and the error is
 *   UNAVAILABLE: a create either starts a job or leaves nothing (retry with the same id).
 * - Deleting a job that has not ended is refused for managed jobs (cancel first: deleting
 *   would orphan a running workflow and its pods), unless its workflow has closed (nothing
 *   left to stop); a trainer job (rlorTrainerJobs) is
 *   cancelled and then deleted, as the Training API's cleanup-on-close expects. Checkpoints
 *   are blobs in the checkpoint store and outlive the row either way.
 * - `:resume` sets the job back to JOB_STATE_PENDING before asking the orchestrator, and
 *   restores the previous state if that fails. Cancelled managed jobs cannot resume (a
 *   trainer job can: spec.resumable says which states).
 */
import { z } from 'zod';
import type { Deps } from '../../context.js';
import { createId } from '../../http/body.js';
import { ApiError, invalid, precondition, zodMessage } from '../../http/errors.js';
import type { CollectionRoutes, RequestCtx, SubRoute, Verb } from '../../http/router.js';
import type { JobCollection, JobRef } from '../../orchestrator.js';
import { managedJobCheckpoints } from '../checkpoints.js';
import { type Body, getRow, listRows, render } from '../common.js';
import { jobViewRoutes } from '../job-views.js';
import { metricColumns } from '../metric-columns.js';
import { INITIAL_PROGRESS, isFinal, type JobState } from './states.js';

export interface JobSpec {
  collection: JobCollection;
  /** `supervisedFineTuningJob`: the create id is `?{singular}Id=`. */
  singular: string;
  /** Validates a create body; returns the job's fields with every default resolved. */
  build(ctx: RequestCtx, body: Record<string, unknown>, id: string): Promise<Body>;
  /** States `:resume` accepts. */
  resumable: readonly JobState[];
  /** DELETE of a job that has not ended: cancel it first, or refuse. */
  deleteActive: 'cancel' | 'refuse';
  verbs?: Record<string, Verb>;
  sub?: SubRoute[];
}

const unavailable = (what: string, err: unknown) =>
  new ApiError('UNAVAILABLE', `${what}: ${(err as Error)?.message ?? String(err)}`);

async function create(deps: Deps, spec: JobSpec, ctx: RequestCtx) {
  const { id, body } = createId(ctx.req, spec.singular);
  const fields = await spec.build(ctx, body, id);
  const row = await deps.store.create<Body>(spec.collection, ctx.account, id, {
    displayName: id,
    ...fields,
    state: 'JOB_STATE_PENDING',
    status: { code: 'OK', message: '' },
    jobProgress: INITIAL_PROGRESS,
    createdBy: ctx.principal.keyId,
  });
  try {
    await deps.orchestrator.start({ collection: spec.collection, account: ctx.account, id });
  } catch (err) {
    await deps.store.delete(spec.collection, ctx.account, id);
    throw unavailable(`could not start ${row.name} (nothing was created; retry)`, err);
  }
  return render(row);
}

async function cancel(deps: Deps, spec: JobSpec, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, spec.collection, ctx.account, id);
  if (isFinal(row.body.state))
    throw precondition(
      `${row.name} is ${String(row.body.state)}: only a job that has not ended can be cancelled`,
    );
  try {
    await deps.orchestrator.cancel(ref(spec, ctx, id));
  } catch (err) {
    throw unavailable(`could not cancel ${row.name}`, err);
  }
  return render(await getRow(deps, spec.collection, ctx.account, id));
}

const ref = (spec: JobSpec, ctx: RequestCtx, id: string): JobRef => ({
  collection: spec.collection,
  account: ctx.account,
  id,
});

async function resume(deps: Deps, spec: JobSpec, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, spec.collection, ctx.account, id);
  const state = String(row.body.state);
  if (state === 'JOB_STATE_CANCELLED' && !spec.resumable.includes(state as JobState))
    throw precondition(
      `${row.name} was cancelled and cannot be resumed: create a new job with warmStartFrom set to the model of its last checkpoint`,
    );
  if (!spec.resumable.includes(state as JobState))
    throw precondition(
      `${row.name} is ${state}: only ${spec.resumable.join(' or ')} jobs can be resumed`,
    );
  const previous = {
    state: row.body.state,
    status: row.body.status,
    completedTime: row.body.completedTime,
  };
  const updated = await deps.store.update<Body>(
    spec.collection,
    ctx.account,
    id,
    ({ completedTime: _, ...body }) => ({
      ...body,
      state: 'JOB_STATE_PENDING',
      status: { code: 'OK', message: '' },
    }),
    { expectVersion: row.version },
  );
  try {
    await deps.orchestrator.resume(ref(spec, ctx, id));
  } catch (err) {
    await deps.store.update<Body>(spec.collection, ctx.account, id, (body) => ({
      ...body,
      ...previous,
    }));
    throw unavailable(`could not resume ${row.name}`, err);
  }
  return render(updated);
}

/** Whether the job's workflow may still be running (true when the orchestrator cannot tell). */
async function workflowActive(deps: Deps, job: JobRef): Promise<boolean> {
  if (!deps.orchestrator.isActive) return true;
  try {
    return await deps.orchestrator.isActive(job);
  } catch (err) {
    throw unavailable(`could not look up the workflow of ${job.id}`, err);
  }
}

async function remove(deps: Deps, spec: JobSpec, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, spec.collection, ctx.account, id);
  // A job whose workflow has closed without recording an end has nothing left to stop.
  if (!isFinal(row.body.state) && (await workflowActive(deps, ref(spec, ctx, id)))) {
    if (spec.deleteActive === 'refuse')
      throw precondition(
        `${row.name} is ${String(row.body.state)}: cancel it first (:cancel) and delete it once it has ended`,
      );
    try {
      await deps.orchestrator.cancel(ref(spec, ctx, id));
    } catch (err) {
      throw unavailable(`could not stop ${row.name} before deleting it`, err);
    }
  }
  await deps.store.delete(spec.collection, ctx.account, id);
  return {};
}

const metricsQuery = z.looseObject({
  afterStep: z.coerce.number().int().optional(),
  limit: z.coerce.number().int().min(1).max(100_000).optional(),
  format: z.enum(['json', 'jsonl', 'csv', 'columns']).default('json'),
});

function csv(rows: { step: number; time: string; values: Record<string, unknown> }[]): string {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r.values)))].sort();
  const cell = (v: unknown) => (v === null || v === undefined ? '' : JSON.stringify(v));
  const lines = rows.map((r) => [r.step, r.time, ...keys.map((k) => cell(r.values[k]))].join(','));
  return `${['step', 'time', ...keys.map((k) => JSON.stringify(k))].join(',')}\n${lines.map((l) => `${l}\n`).join('')}`;
}

/** Per-step metrics the workflow recorded: JSON (default), JSON lines, CSV or columns. */
async function metrics(deps: Deps, spec: JobSpec, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, spec.collection, ctx.account, id);
  const q = metricsQuery.safeParse(ctx.req.query ?? {});
  if (!q.success) throw invalid(zodMessage(q.error, 'query'));
  const rows = await deps.store.listMetrics(row.name, {
    ...(q.data.afterStep !== undefined ? { afterStep: q.data.afterStep } : {}),
    ...(q.data.limit !== undefined ? { limit: q.data.limit } : {}),
  });
  if (q.data.format === 'json') return { job: row.name, metrics: rows };
  if (q.data.format === 'columns') return metricColumns(row.name, rows);
  if (q.data.format === 'csv') return ctx.reply.type('text/csv; charset=utf-8').send(csv(rows));
  const text = rows.map((r) => `${JSON.stringify(r)}\n`).join('');
  return ctx.reply.type('application/jsonl; charset=utf-8').send(text);
}

export function jobRoutes(deps: Deps, spec: JobSpec): CollectionRoutes {
  return {
    collection: spec.collection,
    list: (ctx) => listRows(deps, ctx, spec.collection),
    create: (ctx) => create(deps, spec, ctx),
    get: async (ctx, id) => render(await getRow(deps, spec.collection, ctx.account, id)),
    delete: (ctx, id) => remove(deps, spec, ctx, id),
    verbs: {
      cancel: { handler: (ctx, id) => cancel(deps, spec, ctx, id) },
      resume: { handler: (ctx, id) => resume(deps, spec, ctx, id) },
      ...spec.verbs,
    },
    sub: [
      { method: 'GET', path: 'metrics', handler: (ctx, p) => metrics(deps, spec, ctx, p.id ?? '') },
      // rollouts, renderSamples, events (the dashboard's reads).
      ...jobViewRoutes(deps, spec.collection),
      // A trainer job's own routes list its checkpoints; a managed job's come from its pods.
      ...(spec.sub ?? [
        {
          method: 'GET' as const,
          path: 'checkpoints',
          handler: (ctx: RequestCtx, p: Record<string, string | undefined>) =>
            managedJobCheckpoints(deps, ctx, spec.collection, p.id ?? ''),
        },
      ]),
    ],
  };
}

/**
 * What a person watching a job reads besides its body and metrics (the dashboard uses these,
 * and so can anyone with the job's key):
 *
 * - `GET {job}/rollouts`: the rollouts an RFT job scored, as the workflow keeps them (one JSON
 *   lines object per step under `{job}/rollouts/step-NNNNNN.jsonl` in the artifact store),
 *   paged and filtered by `?step=`, `?minStep=`/`?maxStep=`, `?minScore=`/`?maxScore=`.
 * - `GET {job}/renderSamples`: the first rendered records of an SFT job's dataset (tokens,
 *   decoded tokens and loss weights), kept at `{job}/render-samples.jsonl` when it starts.
 * - `GET {job}/events`: a server-sent-events stream of the job's state changes and new metric
 *   rows, ending after the job reaches a final state.
 * - `GET {job}/logs`: the job's log, tail or follow (job-logs.ts).
 *
 * Choices:
 * - The events stream polls the store (every 500 ms, job-follow.ts) rather than being told:
 *   the control plane keeps no job state in memory and any replica can serve any stream. A metric row
 *   the workflow rewrites (same step, later time: eval values merged in) is sent again; the
 *   client keeps the last row per step.
 * - A stream ends without `end` when the server closes (it would otherwise hold close() until
 *   the job ends).
 * - Rollout pages are offsets into the filtered list, bound to the job and the filter, so a
 *   token from one filter cannot page another.
 */
import { z } from 'zod';
import type { Collection, MetricRow } from '../../store/index.js';
import type { Deps } from '../context.js';
import { invalid, zodMessage } from '../http/errors.js';
import { pageArray, parseListQuery } from '../http/paging.js';
import type { RequestCtx, SubRoute } from '../http/router.js';
import { getRow, render } from './common.js';
import { followJobRow } from './job-follow.js';
import { jobLogRoutes } from './job-logs.js';

const rolloutQuery = z.looseObject({
  step: z.coerce.number().int().min(1).optional(),
  minStep: z.coerce.number().int().min(1).optional(),
  maxStep: z.coerce.number().int().min(1).optional(),
  minScore: z.coerce.number().finite().optional(),
  maxScore: z.coerce.number().finite().optional(),
});

/** One scored rollout as the RFT workflow records it (src/workflows/activities/rft.ts). */
export interface RolloutView {
  step: number;
  rowId: string;
  line: number;
  candidate: number;
  completion: string;
  score: number;
  valid: boolean;
  reason: string;
  snapshot: string | null;
}

const STEP_FILE = /\/rollouts\/step-(\d+)\.jsonl$/;

async function jsonLines<T>(deps: Deps, key: string): Promise<T[]> {
  const text = (await deps.artifacts.get(key)).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

async function rollouts(deps: Deps, collection: Collection, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, collection, ctx.account, id);
  const q = rolloutQuery.safeParse(ctx.req.query ?? {});
  if (!q.success) throw invalid(zodMessage(q.error, 'query'));
  const page = parseListQuery(ctx.req.query);
  const f = q.data;
  const lo = f.step ?? f.minStep ?? 1;
  const hi = f.step ?? f.maxStep ?? Number.MAX_SAFE_INTEGER;
  if (lo > hi) throw invalid(`query: minStep (${lo}) is above maxStep (${hi})`);
  if (f.minScore !== undefined && f.maxScore !== undefined && f.minScore > f.maxScore)
    throw invalid(`query: minScore (${f.minScore}) is above maxScore (${f.maxScore})`);
  const files = (await deps.artifacts.list(`${row.name}/rollouts/`))
    .map((o) => ({ key: o.key, step: Number(STEP_FILE.exec(o.key)?.[1] ?? Number.NaN) }))
    .filter((o) => o.step >= lo && o.step <= hi);
  const all: RolloutView[] = [];
  for (const file of files)
    for (const r of await jsonLines<RolloutView>(deps, file.key))
      if (
        (f.minScore === undefined || r.score >= f.minScore) &&
        (f.maxScore === undefined || r.score <= f.maxScore)
      )
        all.push(r);
  const scope = `${row.name}?${JSON.stringify([lo, hi, f.minScore ?? null, f.maxScore ?? null])}`;
  const { items, nextPageToken } = pageArray(all, page, scope);
  return { rollouts: items, nextPageToken, totalSize: all.length };
}

async function renderSamples(deps: Deps, collection: Collection, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, collection, ctx.account, id);
  const key = `${row.name}/render-samples.jsonl`;
  // A job that has not reached training yet (or a kind that renders nothing) has none.
  if (!(await deps.artifacts.stat(key))) return { renderSamples: [] };
  return { renderSamples: await jsonLines<Record<string, unknown>>(deps, key) };
}

const eventsQuery = z.looseObject({ afterStep: z.coerce.number().int().optional() });

/** `state` (the job's rendered body whenever it changes), `metrics` (new rows), `end`. */
async function events(deps: Deps, collection: Collection, ctx: RequestCtx, id: string) {
  const first = await getRow(deps, collection, ctx.account, id);
  const q = eventsQuery.safeParse(ctx.req.query ?? {});
  if (!q.success) throw invalid(zodMessage(q.error, 'query'));
  let lastStep = q.data.afterStep ?? Number.NEGATIVE_INFINITY;
  let lastTime = '';
  let lastVersion = -1;
  await followJobRow(deps, collection, ctx, first, async (row, sse) => {
    if (row.version !== lastVersion) {
      lastVersion = row.version;
      sse.send('state', render(row));
    }
    // Re-read the last step sent: the workflow may have rewritten it.
    const after = Number.isFinite(lastStep) ? lastStep - 1 : undefined;
    const rows: MetricRow[] = await deps.store.listMetrics(
      row.name,
      after !== undefined ? { afterStep: after } : {},
    );
    const fresh = rows.filter(
      (m) => m.step > lastStep || (m.step === lastStep && lastTime !== '' && m.time !== lastTime),
    );
    if (fresh.length > 0) {
      const tail = fresh[fresh.length - 1]!;
      lastStep = tail.step;
      lastTime = tail.time;
      sse.send('metrics', { metrics: fresh });
    }
  });
}

/** The routes above, for one job collection. */
export function jobViewRoutes(deps: Deps, collection: Collection): SubRoute[] {
  return [
    {
      method: 'GET',
      path: 'rollouts',
      handler: (ctx, p) => rollouts(deps, collection, ctx, p.id ?? ''),
    },
    {
      method: 'GET',
      path: 'renderSamples',
      handler: (ctx, p) => renderSamples(deps, collection, ctx, p.id ?? ''),
    },
    {
      method: 'GET',
      path: 'events',
      handler: (ctx, p) => events(deps, collection, ctx, p.id ?? ''),
    },
    ...jobLogRoutes(deps, collection),
  ];
}

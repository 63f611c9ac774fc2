/**
 * `GET {job}/logs`: a job's log, one line per thing that happened to it, read from the records
 * the platform keeps of it: its creation, every metric row the trainer reported (with the time
 * it was reported), each saved checkpoint, each step of scored rollouts (RFT), and its state
 * with the status message. `?tail=N` keeps the last N lines (default 500);
 * `?follow=true` answers a server-sent-events stream instead: `log` events `{lines}` as lines
 * appear, then `end` once the job reaches a final state.
 *
 * Choices:
 * - The lines are derived from stored records rather than written by the worker as it goes: the
 *   control plane can serve them from any replica, a restarted worker loses nothing, and a job's
 *   log cannot disagree with its metrics. The trainer pod's own process log stays on the host
 *   that ran it (it names host paths and is not per account).
 * - Each line has a stable `id` (`metrics-12`, `checkpoint-40`, `state-JOB_STATE_RUNNING`); a
 *   record the workflow rewrites (eval values merged into a step's row) is sent again under the
 *   same id, and a follower replaces the line it has.
 * - State changes only exist as the current state in the store, so a follower sees every state
 *   it was there for, while `tail` shows the current one.
 */
import { z } from 'zod';
import type { Collection, MetricRow, ResourceRow } from '../../store/index.js';
import type { Deps } from '../context.js';
import { invalid, zodMessage } from '../http/errors.js';
import type { RequestCtx, SubRoute } from '../http/router.js';
import { type Body, getRow } from './common.js';
import { followJobRow } from './job-follow.js';
import { isFinal } from './jobs/states.js';

export interface JobLogLine {
  id: string;
  /** RFC 3339. */
  time: string;
  level: 'INFO' | 'WARNING' | 'ERROR';
  text: string;
}

const logsQuery = z.looseObject({
  tail: z.coerce.number().int().min(1).max(10_000).default(500),
  follow: z.enum(['true', 'false']).default('false'),
});

const ROLLOUT_FILE = /\/rollouts\/step-(\d+)\.jsonl$/;

const num = (v: number) =>
  Number.isInteger(v)
    ? String(v)
    : Math.abs(v) < 1e-3 && v !== 0
      ? v.toExponential(3)
      : String(Number(v.toPrecision(5)));

const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);

function metricLine(row: MetricRow, total: number | undefined): JobLogLine {
  const values = Object.entries(row.values)
    .filter(([, v]) => v !== null && v !== '')
    .map(([k, v]) => `${k}=${typeof v === 'number' ? num(v) : v}`)
    .join(' ');
  return {
    id: `metrics-${row.step}`,
    time: row.time,
    level: 'INFO',
    text: `step ${row.step}${total ? `/${total}` : ''}: ${values}`,
  };
}

function stateLine(row: ResourceRow<Body>): JobLogLine {
  const state = String(row.body.state ?? 'JOB_STATE_UNSPECIFIED');
  const status = row.body.status as { code?: string; message?: string } | undefined;
  const failed = status?.code === 'ERROR' || state === 'JOB_STATE_FAILED';
  const time = (isFinal(state) && str(row.body.completedTime)) || row.updateTime;
  return {
    id: `state-${state}`,
    time,
    level: failed ? 'ERROR' : 'INFO',
    text: `state ${state.replace(/^JOB_STATE_/, '')}${status?.message ? `: ${status.message}` : ''}`,
  };
}

interface RolloutStep {
  score: number;
  valid: boolean;
}

/**
 * The last `tail` metric rows: read from the job's progress step back when that finds enough
 * (the rows after any step include the last ones), else all of them. A 100,000-step job's
 * tail costs its last rows, not the whole history.
 */
async function lastMetrics(deps: Deps, row: ResourceRow<Body>, tail: number): Promise<MetricRow[]> {
  const progress = (row.body.jobProgress as { step?: number } | undefined)?.step ?? 0;
  const from = Math.max(0, progress - tail);
  if (from > 0) {
    const recent = await deps.store.listMetrics(row.name, { afterStep: from });
    if (recent.length >= tail) return recent.slice(-tail);
  }
  return (await deps.store.listMetrics(row.name)).slice(-tail);
}

/**
 * The job's lines, with `metrics` (the rows to show) among them; `cache` keeps the lines of
 * checkpoints and of rollout files already read (by key and etag) across polls.
 */
async function readLines(
  deps: Deps,
  row: ResourceRow<Body>,
  metrics: MetricRow[],
  cache: Map<string, JobLogLine>,
): Promise<JobLogLine[]> {
  const b = row.body;
  const progress = b.jobProgress as { totalSteps?: number } | undefined;
  const stepTime = new Map(metrics.map((m) => [m.step, m.time]));
  const what = [
    str(b.baseModel) && `base model ${b.baseModel}`,
    str(b.warmStartFrom) && `warm start from ${b.warmStartFrom}`,
    str(b.dataset) && `dataset ${b.dataset}`,
    str(b.evaluator) && `evaluator ${b.evaluator}`,
    str(b.outputModel) && `output model ${b.outputModel}`,
  ].filter(Boolean);
  const lines: JobLogLine[] = [
    {
      id: 'created',
      time: row.createTime,
      level: 'INFO',
      text: `created ${row.collection}/${row.id}${what.length ? `: ${what.join(', ')}` : ''}`,
    },
    ...metrics.map((m) => metricLine(m, progress?.totalSteps)),
  ];
  for (const c of (Array.isArray(b.checkpointHistory) ? b.checkpointHistory : []) as {
    checkpoint?: string;
    step?: number;
  }[])
    if (typeof c.step === 'number') {
      const id = `checkpoint-${c.step}`;
      let line = cache.get(id);
      if (!line) {
        // Saved with its step's row: that row's time (read alone when not among `metrics`).
        const time =
          stepTime.get(c.step) ??
          (await deps.store.listMetrics(row.name, { afterStep: c.step - 1, limit: 1 })).find(
            (m) => m.step === c.step,
          )?.time ??
          row.updateTime;
        line = {
          id,
          time,
          level: 'INFO',
          text: `checkpoint saved at step ${c.step}${c.checkpoint ? `: ${c.checkpoint}` : ''}`,
        };
        cache.set(id, line);
      }
      lines.push(line);
    }
  for (const o of await deps.artifacts.list(`${row.name}/rollouts/`)) {
    const step = Number(ROLLOUT_FILE.exec(o.key)?.[1] ?? Number.NaN);
    if (!Number.isFinite(step)) continue;
    const cacheKey = `${o.key}@${o.etag}`;
    let line = cache.get(cacheKey);
    if (!line) {
      const scored = (await deps.artifacts.get(o.key))
        .toString('utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as RolloutStep);
      const mean = scored.reduce((a, r) => a + r.score, 0) / Math.max(1, scored.length);
      const invalidCount = scored.filter((r) => !r.valid).length;
      line = {
        id: `rollouts-${step}`,
        time: o.updated.toISOString(),
        level: invalidCount > 0 ? 'WARNING' : 'INFO',
        text: `step ${step}: ${scored.length} rollouts scored, mean score ${num(mean)}${invalidCount ? `, ${invalidCount} invalid` : ''}`,
      };
      cache.set(cacheKey, line);
    }
    lines.push(line);
  }
  // A job whose MLflow tracking failed trained on; the failure is a warning in its log.
  const trackingWarning = str(b.trackingWarning);
  if (trackingWarning)
    lines.push({
      id: 'tracking-warning',
      time: row.updateTime,
      level: 'WARNING',
      text: trackingWarning,
    });
  lines.push(stateLine(row));
  // RFC 3339 UTC strings order as times; stable, so records with the same time keep the order
  // above.
  return lines.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
}

async function follow(
  deps: Deps,
  collection: Collection,
  ctx: RequestCtx,
  first: ResourceRow<Body>,
  tail: number,
) {
  const sent = new Map<string, string>();
  const cache = new Map<string, JobLogLine>();
  let lastStep = 0;
  let initial = true;
  await followJobRow(deps, collection, ctx, first, async (row, sse) => {
    // First the tail; then the rows from the last step sent on (it may have been rewritten).
    const metrics = initial
      ? await lastMetrics(deps, row, tail)
      : await deps.store.listMetrics(row.name, { afterStep: Math.max(0, lastStep - 1) });
    lastStep = metrics.at(-1)?.step ?? lastStep;
    let lines = await readLines(deps, row, metrics, cache);
    if (initial) lines = lines.slice(-tail);
    initial = false;
    const fresh = lines.filter((l) => sent.get(l.id) !== l.text);
    for (const l of fresh) sent.set(l.id, l.text);
    if (fresh.length > 0) sse.send('log', { lines: fresh });
  });
}

async function logs(deps: Deps, collection: Collection, ctx: RequestCtx, id: string) {
  const row = await getRow(deps, collection, ctx.account, id);
  const q = logsQuery.safeParse(ctx.req.query ?? {});
  if (!q.success) throw invalid(zodMessage(q.error, 'query'));
  if (q.data.follow === 'true') return follow(deps, collection, ctx, row, q.data.tail);
  const metrics = await lastMetrics(deps, row, q.data.tail);
  const lines = await readLines(deps, row, metrics, new Map());
  return { logs: lines.slice(-q.data.tail) };
}

export function jobLogRoutes(deps: Deps, collection: Collection): SubRoute[] {
  return [
    { method: 'GET', path: 'logs', handler: (ctx, p) => logs(deps, collection, ctx, p.id ?? '') },
  ];
}

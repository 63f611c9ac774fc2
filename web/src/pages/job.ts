/**
 * One job: state and progress, metric curves (read as columns, then grown live from the events
 * stream), settings, checkpoints with promote, RFT rollouts with a sample viewer, SFT render
 * samples, the log followed live.
 */
import {
  type Checkpoint,
  earlyRead,
  followJob,
  followLogs,
  JOB_COLLECTIONS,
  type Job,
  type JobCollection,
  type JobLogLine,
  jobPath,
  type MetricColumns,
  type RenderSample,
  type RolloutView,
  request,
  requestText,
  type Session,
} from '../api';
import { chartControls, chartGroup } from '../chart-group';
import { h, shortState, stateClass, table, when } from '../dom';

function download(name: string, text: string, type: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function settings(job: Job): HTMLElement {
  const skip = new Set([
    'name',
    'state',
    'status',
    'jobProgress',
    'createTime',
    'updateTime',
    'completedTime',
  ]);
  const rows = Object.entries(job).filter(([k, v]) => !skip.has(k) && v !== undefined && v !== '');
  return h(
    'dl',
    { class: 'settings' },
    rows.flatMap(([k, v]) => [
      h('dt', {}, k),
      h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v)),
    ]),
  );
}

async function checkpointsSection(host: HTMLElement, job: Job): Promise<void> {
  let list: Checkpoint[];
  try {
    list = (await request<{ checkpoints: Checkpoint[] }>('GET', `${jobPath(job.name)}/checkpoints`))
      .checkpoints;
  } catch (err) {
    host.replaceChildren(h('p', { class: 'error' }, (err as Error).message));
    return;
  }
  if (list.length === 0) {
    host.replaceChildren(h('p', { class: 'empty' }, 'No checkpoints yet.'));
    return;
  }
  const promotable = (c: Checkpoint) => c.promotable ?? c.checkpointType.startsWith('INFERENCE');
  host.replaceChildren(
    table(
      ['Checkpoint', 'Type', 'Created', 'Promote to a model'],
      list.map((c, i) => {
        const id = c.name.split('/').pop()!;
        if (!promotable(c)) return [id, c.checkpointType, when(c.createTime), ''];
        const input = h('input', {
          type: 'text',
          'aria-label': `model id for ${id}`,
          placeholder: 'model id',
          'data-promote-input': i,
        });
        const out = h('span', { class: 'result', role: 'status' });
        const button = h(
          'button',
          {
            type: 'button',
            'data-promote': i,
            onclick: () => {
              out.className = 'result';
              out.textContent = 'promoting…';
              request<{ name: string }>('POST', `/v1/${c.name}:promote`, {
                outputModelId: input.value.trim(),
              })
                .then((m) => {
                  out.replaceChildren(
                    'created ',
                    h('a', { href: '#/models' }, m.name),
                    ' · ',
                    h(
                      'a',
                      { href: `#/new/deployment?baseModel=${encodeURIComponent(m.name)}` },
                      'Deploy it',
                    ),
                  );
                })
                .catch((err: Error) => {
                  out.className = 'error';
                  out.textContent = err.message;
                });
            },
          },
          'Promote',
        );
        return [
          id,
          c.checkpointType,
          when(c.createTime),
          h('span', { class: 'promote' }, input, button, out),
        ];
      }),
      'Checkpoints',
    ),
  );
}

function rolloutsSection(host: HTMLElement, job: Job): void {
  const step = h('input', { id: 'rollout-step', type: 'number', min: 1, placeholder: 'all' });
  const minScore = h('input', {
    id: 'rollout-min-score',
    type: 'number',
    step: 'any',
    placeholder: 'any',
  });
  const list = h('div');
  const viewer = h('aside', { class: 'viewer', 'aria-label': 'Rollout', hidden: true });
  let token = '';
  const show = (r: RolloutView) => {
    viewer.hidden = false;
    viewer.replaceChildren(
      h('h3', {}, `Step ${r.step} · ${r.rowId} · candidate ${r.candidate}`),
      h(
        'dl',
        {},
        h('dt', {}, 'score'),
        h('dd', {}, r.score.toFixed(4)),
        h('dt', {}, 'valid'),
        h('dd', {}, String(r.valid)),
        h('dt', {}, 'reason'),
        h('dd', {}, r.reason || '—'),
        h('dt', {}, 'snapshot'),
        h('dd', {}, r.snapshot ?? '—'),
      ),
      h('h4', {}, 'Completion'),
      h('pre', { class: 'completion' }, r.completion),
    );
  };
  const load = async (more: boolean) => {
    const q = new URLSearchParams({ pageSize: '50' });
    if (step.value) q.set('step', step.value);
    if (minScore.value) q.set('minScore', minScore.value);
    if (more && token) q.set('pageToken', token);
    try {
      const page = await request<{
        rollouts: RolloutView[];
        nextPageToken: string;
        totalSize: number;
      }>('GET', `${jobPath(job.name)}/rollouts?${q}`);
      token = page.nextPageToken;
      const t = table(
        ['Step', 'Prompt', 'Cand.', 'Score', 'Valid', 'Completion'],
        page.rollouts.map((r) => [
          r.step,
          r.rowId,
          r.candidate,
          r.score.toFixed(3),
          r.valid ? 'yes' : 'no',
          h(
            'button',
            { type: 'button', class: 'link rollout-open', onclick: () => show(r) },
            r.completion.slice(0, 60) || '(empty)',
          ),
        ]),
        'Rollouts',
      );
      list.replaceChildren(
        h('p', { id: 'rollout-count' }, `${page.totalSize} rollouts`),
        t,
        token ? h('button', { type: 'button', onclick: () => void load(true) }, 'Next page') : '',
      );
    } catch (err) {
      list.replaceChildren(h('p', { class: 'error', role: 'alert' }, (err as Error).message));
    }
  };
  const filter = h('button', { type: 'button', onclick: () => void load(false) }, 'Filter');
  host.replaceChildren(
    h(
      'div',
      { class: 'filters' },
      h('label', {}, 'Step ', step),
      h('label', {}, 'Min score ', minScore),
      filter,
    ),
    h('div', { class: 'split' }, list, viewer),
  );
  void load(false);
}

async function renderSamplesSection(host: HTMLElement, job: Job): Promise<void> {
  const { renderSamples } = await request<{ renderSamples: RenderSample[] }>(
    'GET',
    `${jobPath(job.name)}/renderSamples`,
  );
  if (renderSamples.length === 0) {
    host.replaceChildren(h('p', { class: 'empty' }, 'No render samples (yet).'));
    return;
  }
  host.replaceChildren(
    h(
      'p',
      {},
      'Tokens the loss is computed on are highlighted; the others (prompts, template) are dimmed.',
    ),
    ...renderSamples.slice(0, 5).map((r) =>
      h(
        'div',
        { class: 'tokens', 'aria-label': `render sample of line ${r.source_jsonl_line_number}` },
        h('h4', {}, `line ${r.source_jsonl_line_number} · ${r.renderer}`),
        r.decoded_tokens.map((t, i) =>
          h(
            'span',
            {
              class: (r.token_weights[i] ?? 0) > 0 ? 'tok trained' : 'tok',
              title: `id ${r.token_ids[i]} · weight ${r.token_weights[i]}`,
            },
            t,
          ),
        ),
      ),
    ),
  );
}

/**
 * The job's log, followed live: lines come from `{job}/logs?follow=true`; a line sent again
 * (same id) replaces the one shown. Keeps the view at the bottom while the user is there.
 */
function logsSection(host: HTMLElement, job: Job): () => void {
  const list = h('ol', { id: 'job-log', class: 'log', 'aria-label': 'Job log', tabindex: 0 });
  const follow = h('input', { id: 'log-follow', type: 'checkbox', checked: true });
  const status = h('p', { role: 'status', class: 'muted' }, 'following…');
  const shown = new Map<string, HTMLLIElement>();
  const line = (l: JobLogLine) =>
    h(
      'li',
      { class: `log-${l.level.toLowerCase()}`, 'data-id': l.id },
      h('time', { datetime: l.time }, when(l.time)),
      ' ',
      h('span', { class: 'level' }, l.level),
      ' ',
      l.text,
    );
  const stop = followLogs(job.name, (e) => {
    if (e.event === 'log') {
      for (const l of e.data.lines) {
        const el = line(l);
        const old = shown.get(l.id);
        if (old) old.replaceWith(el);
        else list.append(el);
        shown.set(l.id, el);
      }
      if (follow.checked) list.scrollTop = list.scrollHeight;
    } else if (e.event === 'end') status.textContent = `ended: ${shortState(e.data.state)}`;
    else status.textContent = e.data.message;
  });
  host.replaceChildren(
    h('div', { class: 'filters' }, h('label', {}, follow, ' keep at the newest line'), status),
    list,
  );
  return stop;
}

/**
 * The job page paints its metric chart first: the rows are read as columns
 * (`{job}/metrics?format=columns`, asked for by index.html before this code loads) beside the
 * job itself, before anything else is asked of the server, and drawn as soon as they arrive.
 * Only once that frame is on screen do the log, checkpoints, samples and the events stream
 * start (from the last step read: the stream does not send the rows again), so they neither
 * compete with the metrics on the server nor hold up the paint.
 */
export async function jobPage(
  app: HTMLElement,
  s: Session,
  collection: string,
  id: string,
): Promise<() => void> {
  if (!(collection in JOB_COLLECTIONS)) throw new Error(`unknown job kind ${collection}`);
  const name = `accounts/${s.account}/${collection}/${id}`;
  const metrics = earlyRead<MetricColumns>(`${jobPath(name)}/metrics?format=columns`);
  const jobRead = request<Job>('GET', jobPath(name));
  // If both fail (another account's job), the metrics' failure is the one reported.
  jobRead.catch(() => undefined);
  const kind = JOB_COLLECTIONS[collection as JobCollection];

  const state = h('span', { id: 'job-state', class: 'state' });
  const progress = h('span', { id: 'job-progress' });
  const about = h('span');
  const status = h('p', { class: 'error', role: 'status' });
  const chartHost = h('div', { id: 'charts', class: 'charts' });
  const c = chartGroup(chartHost);
  const csv = h(
    'button',
    {
      type: 'button',
      onclick: () =>
        void requestText(`${jobPath(name)}/metrics?format=csv`).then((text) =>
          download(`${id}-metrics.csv`, text, 'text/csv'),
        ),
    },
    'Export CSV',
  );
  const checkpoints = h('div', { id: 'checkpoints' });
  const extra = h('div', { id: 'extra' });
  const logs = h('div', { id: 'logs' });
  const settingsHost = h('div');

  app.replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Jobs'), ` / ${kind}`),
    h('h1', {}, id, ' ', state),
    h('p', {}, progress, about),
    status,
    h(
      'section',
      { 'aria-label': 'Metrics' },
      h('h2', {}, 'Metrics'),
      chartControls(
        c,
        csv,
        h(
          'a',
          { href: `#/compare?jobs=${collection}:${encodeURIComponent(id)}` },
          'Compare with other runs',
        ),
      ),
      chartHost,
    ),
    h('section', {}, h('h2', {}, 'Checkpoints'), checkpoints),
    kind === 'RFT'
      ? h('section', {}, h('h2', {}, 'Rollouts'), extra)
      : kind === 'SFT'
        ? h('section', {}, h('h2', {}, 'Render samples'), extra)
        : '',
    h('section', { 'aria-label': 'Logs' }, h('h2', {}, 'Logs'), logs),
    h('section', {}, h('h2', {}, 'Settings'), settingsHost),
  );
  c.addColumns(await metrics);
  let job = await jobRead;

  const paint = () => {
    state.className = stateClass(job.state);
    state.textContent = shortState(job.state);
    const p = job.jobProgress;
    progress.textContent =
      p && p.totalSteps > 0 ? `step ${p.step} of ${p.totalSteps} (${Math.round(p.percent)}%)` : '';
    about.textContent = ` · created ${when(job.createTime)}${job.outputModel ? ` · output ${job.outputModel}` : ''}`;
    status.textContent = job.status?.code === 'ERROR' ? job.status.message : '';
  };
  paint();
  settingsHost.replaceChildren(settings(job));

  let stopped = false;
  let stop = () => {};
  let stopLogs = () => {};
  // After the frame with the chart: a timeout queued from an animation frame runs once it painted.
  requestAnimationFrame(() =>
    setTimeout(() => {
      if (stopped) return;
      stopLogs = logsSection(logs, job);
      void checkpointsSection(checkpoints, job);
      if (kind === 'RFT') rolloutsSection(extra, job);
      if (kind === 'SFT') void renderSamplesSection(extra, job);
      // The last step read comes again once, in case the workflow rewrote it meanwhile.
      const last = c.lastStep();
      stop = followJob(name, last === undefined ? undefined : last - 1, (e) => {
        if (e.event === 'metrics') c.add(e.data.metrics);
        else if (e.event === 'state') {
          const before = job.state;
          job = e.data;
          paint();
          if (before !== job.state) {
            void checkpointsSection(checkpoints, job);
            if (kind === 'SFT') void renderSamplesSection(extra, job);
          }
        } else if (e.event === 'end') {
          void checkpointsSection(checkpoints, job);
          if (kind === 'RFT') rolloutsSection(extra, job);
        } else if (e.event === 'error') status.textContent = e.data.message;
      });
    }),
  );
  return () => {
    stopped = true;
    stop();
    stopLogs();
    c.destroy();
  };
}

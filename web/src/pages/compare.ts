/**
 * Compare up to 5 runs on one set of charts: pick jobs of any kind; each run's metrics
 * (`{job}/metrics?format=columns`) are drawn in its own colour, eval series dashed. The picked runs are in
 * the URL (`#/compare?jobs=collection:id,...`), so a comparison can be shared.
 */
import {
  JOB_COLLECTIONS,
  type Job,
  type JobCollection,
  jobPath,
  listAll,
  type MetricColumns,
  request,
  type Session,
} from '../api';
import { chartControls, chartGroup } from '../chart-group';
import { h, shortState } from '../dom';

export const MAX_RUNS = 5;

export async function comparePage(
  app: HTMLElement,
  s: Session,
  query: URLSearchParams,
): Promise<() => void> {
  const picked = (query.get('jobs') ?? '')
    .split(',')
    .filter(Boolean)
    .map((p) => {
      const [collection, id] = p.split(':') as [string, string];
      return { collection, id: decodeURIComponent(id ?? '') };
    })
    .filter((p) => p.collection in JOB_COLLECTIONS && p.id)
    .slice(0, MAX_RUNS);
  const kinds = Object.keys(JOB_COLLECTIONS) as JobCollection[];
  const all = (
    await Promise.all(
      kinds.map((c) =>
        listAll<Job>(s.account, c).then((jobs) => jobs.map((job) => ({ job, collection: c }))),
      ),
    )
  ).flat();
  all.sort((a, b) => b.job.createTime.localeCompare(a.job.createTime));

  const key = (collection: string, id: string) => `${collection}:${id}`;
  const chosen = new Set(picked.map((p) => key(p.collection, p.id)));
  const boxes = all.map(({ job, collection }) => {
    const id = job.name.split('/').pop()!;
    return h('input', {
      type: 'checkbox',
      value: key(collection, id),
      checked: chosen.has(key(collection, id)),
      'aria-label': `compare ${id}`,
    });
  });
  const limit = () => {
    const n = boxes.filter((b) => b.checked).length;
    for (const b of boxes) b.disabled = !b.checked && n >= MAX_RUNS;
  };
  for (const b of boxes) b.addEventListener('change', limit);
  limit();
  const picker = h(
    'form',
    { class: 'card picker', 'aria-label': 'Runs to compare' },
    h('p', {}, `Pick up to ${MAX_RUNS} runs.`),
    h(
      'ul',
      { class: 'plain' },
      all.map(({ job, collection }, i) =>
        h(
          'li',
          {},
          h(
            'label',
            {},
            boxes[i]!,
            ` ${job.name.split('/').pop()} (${JOB_COLLECTIONS[collection]}, ${shortState(job.state)})`,
          ),
        ),
      ),
    ),
    h('button', { type: 'submit' }, 'Compare'),
  );
  picker.addEventListener('submit', (e) => {
    e.preventDefault();
    const jobs = boxes
      .filter((b) => b.checked)
      .map((b) => b.value.split(':').map(encodeURIComponent).join(':'));
    location.hash = `#/compare?jobs=${jobs.join(',')}`;
  });

  const chartHost = h('div', { id: 'charts', class: 'charts' });
  const runs = picked.map((p) => p.id);
  const charts = chartGroup(chartHost, runs);
  app.replaceChildren(
    h('h1', {}, 'Compare runs'),
    picker,
    picked.length
      ? h('section', { 'aria-label': 'Metrics' }, chartControls(charts), chartHost)
      : '',
  );
  for (const p of picked) {
    const name = `accounts/${s.account}/${p.collection}/${p.id}`;
    charts.addColumns(
      await request<MetricColumns>('GET', `${jobPath(name)}/metrics?format=columns`),
      p.id,
    );
  }
  return () => charts.destroy();
}

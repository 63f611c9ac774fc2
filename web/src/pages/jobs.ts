/** Every job of the account, all kinds, newest first; filter by kind and state, search by name. */
import { JOB_COLLECTIONS, type Job, type JobCollection, listAll, type Session } from '../api';
import { h, shortState, stateClass, table, when } from '../dom';

/** `only`: one kind (the trainer jobs page). */
export async function jobsPage(app: HTMLElement, s: Session, only?: JobCollection): Promise<void> {
  const kinds = only ? [only] : (Object.keys(JOB_COLLECTIONS) as JobCollection[]);
  const lists = await Promise.all(kinds.map((c) => listAll<Job>(s.account, c)));
  const jobs = lists
    .flatMap((list, i) => list.map((job) => ({ job, collection: kinds[i]! })))
    .sort((a, b) => b.job.createTime.localeCompare(a.job.createTime));

  const search = h('input', { id: 'job-search', type: 'search', placeholder: 'name contains' });
  const kind = h(
    'select',
    { id: 'job-kind' },
    h('option', { value: '' }, 'all kinds'),
    kinds.map((c) => h('option', { value: c }, JOB_COLLECTIONS[c])),
  );
  const states = [...new Set(jobs.map((j) => j.job.state))].sort();
  const state = h(
    'select',
    { id: 'job-state' },
    h('option', { value: '' }, 'all states'),
    states.map((st) => h('option', { value: st }, shortState(st))),
  );
  const holder = h('div');
  const draw = () => {
    const shown = jobs.filter(
      ({ job, collection }) =>
        (!kind.value || collection === kind.value) &&
        (!state.value || job.state === state.value) &&
        job.name.toLowerCase().includes(search.value.toLowerCase()),
    );
    holder.replaceChildren(
      shown.length === 0
        ? h('p', { class: 'empty' }, jobs.length === 0 ? 'No jobs yet.' : 'No job matches.')
        : table(
            ['Job', 'Kind', 'State', 'Progress', 'Base model', 'Created'],
            shown.map(({ job, collection }) => {
              const id = job.name.split('/').pop()!;
              const p = job.jobProgress;
              return [
                h('a', { href: `#/jobs/${collection}/${encodeURIComponent(id)}` }, id),
                JOB_COLLECTIONS[collection],
                h('span', { class: stateClass(job.state) }, shortState(job.state)),
                p && p.totalSteps > 0
                  ? `${p.step}/${p.totalSteps} (${Math.round(p.percent)}%)`
                  : '',
                job.baseModel ?? '',
                when(job.createTime),
              ];
            }),
            'Jobs',
          ),
    );
  };
  for (const el of [search, kind, state]) el.addEventListener('input', draw);
  draw();
  app.replaceChildren(
    h('h1', {}, only ? 'Trainer jobs' : 'Jobs'),
    only
      ? ''
      : h(
          'p',
          { class: 'actions' },
          h('a', { href: '#/new/sft', class: 'button' }, 'New SFT job'),
          h('a', { href: '#/new/dpo', class: 'button' }, 'New DPO job'),
          h('a', { href: '#/new/rft', class: 'button' }, 'New RFT job'),
          h('a', { href: '#/compare', class: 'button' }, 'Compare runs'),
        ),
    h(
      'div',
      { class: 'filters' },
      h('label', {}, 'Search ', search),
      only ? '' : h('label', {}, 'Kind ', kind),
      h('label', {}, 'State ', state),
    ),
    holder,
  );
}

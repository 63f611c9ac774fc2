/** Models, datasets and deployments of the account: read-only tables. */
import { listAll, request, type Session } from '../api';
import { h, shortState, stateClass, table, when } from '../dom';

interface Row {
  name: string;
  state?: string;
  createTime?: string;
  [field: string]: unknown;
}

const id = (name: string) => name.split('/').pop()!;
const text = (v: unknown) =>
  v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);

async function page(
  app: HTMLElement,
  s: Session,
  title: string,
  collection: string,
  columns: [string, (r: Row) => unknown][],
  action?: [string, (r: Row) => Node | string],
  extra: { detail?: string; create?: [string, string] } = {},
): Promise<void> {
  const rows = await listAll<Row>(s.account, collection);
  app.replaceChildren(
    h('h1', {}, title),
    extra.create
      ? h(
          'p',
          { class: 'actions' },
          h('a', { href: extra.create[0], class: 'button' }, extra.create[1]),
        )
      : '',
    rows.length === 0
      ? h('p', { class: 'empty' }, `No ${title.toLowerCase()} yet.`)
      : table(
          ['Name', 'State', ...columns.map(([c]) => c), 'Created', ...(action ? [action[0]] : [])],
          rows.map((r) => [
            extra.detail
              ? h('a', { href: `${extra.detail}/${encodeURIComponent(id(r.name))}` }, id(r.name))
              : id(r.name),
            r.state ? h('span', { class: stateClass(r.state) }, shortState(r.state)) : '',
            ...columns.map(([, f]) => text(f(r))),
            when(r.createTime),
            ...(action ? [action[1](r)] : []),
          ]),
          title,
        ),
  );
}

/** Deploy a model: POST deployments?deploymentId= {baseModel}; the API's message on failure. */
function deployButton(s: Session, model: Row): HTMLElement {
  const input = h('input', {
    type: 'text',
    placeholder: 'deployment id',
    'aria-label': `deployment id for ${id(model.name)}`,
    'data-deploy-input': id(model.name),
  });
  const out = h('span', { role: 'status' });
  const button = h(
    'button',
    {
      type: 'button',
      'data-deploy': id(model.name),
      onclick: () => {
        out.className = 'result';
        out.textContent = 'deploying…';
        request<{ name: string }>(
          'POST',
          `/v1/accounts/${s.account}/deployments?deploymentId=${encodeURIComponent(input.value.trim())}`,
          { baseModel: model.name },
        )
          .then((d) => {
            out.replaceChildren('created ', h('a', { href: '#/deployments' }, d.name));
          })
          .catch((err: Error) => {
            out.className = 'error';
            out.textContent = err.message;
          });
      },
    },
    'Deploy',
  );
  return h('span', { class: 'promote' }, input, button, out);
}

export const modelsPage = (app: HTMLElement, s: Session) =>
  page(
    app,
    s,
    'Models',
    'models',
    [
      ['Kind', (r) => r.kind],
      ['Base model', (r) => (r.peftDetails as { baseModel?: string } | undefined)?.baseModel ?? ''],
    ],
    ['Deploy', (r) => deployButton(s, r)],
  );

export const datasetsPage = (app: HTMLElement, s: Session) =>
  page(
    app,
    s,
    'Datasets',
    'datasets',
    [
      ['Kind', (r) => r.kind],
      ['Examples', (r) => r.exampleCount],
    ],
    undefined,
    { detail: '#/datasets', create: ['#/new/dataset', 'Upload a dataset'] },
  );

export const deploymentsPage = (app: HTMLElement, s: Session) =>
  page(
    app,
    s,
    'Deployments',
    'deployments',
    [
      ['Model', (r) => r.model ?? r.baseModel],
      ['Replicas', (r) => r.replicaCount ?? r.minReplicaCount],
    ],
    undefined,
    { detail: '#/deployments', create: ['#/new/deployment', 'New deployment'] },
  );

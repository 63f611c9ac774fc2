/** Models, datasets and deployments of the account: read-only tables. */
import { listAll, type Session } from '../api';
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
): Promise<void> {
  const rows = await listAll<Row>(s.account, collection);
  app.replaceChildren(
    h('h1', {}, title),
    rows.length === 0
      ? h('p', { class: 'empty' }, `No ${title.toLowerCase()} yet.`)
      : table(
          ['Name', 'State', ...columns.map(([c]) => c), 'Created'],
          rows.map((r) => [
            id(r.name),
            r.state ? h('span', { class: stateClass(r.state) }, shortState(r.state)) : '',
            ...columns.map(([, f]) => text(f(r))),
            when(r.createTime),
          ]),
          title,
        ),
  );
}

export const modelsPage = (app: HTMLElement, s: Session) =>
  page(app, s, 'Models', 'models', [
    ['Kind', (r) => r.kind],
    ['Base model', (r) => (r.peftDetails as { baseModel?: string } | undefined)?.baseModel ?? ''],
  ]);

export const datasetsPage = (app: HTMLElement, s: Session) =>
  page(app, s, 'Datasets', 'datasets', [
    ['Kind', (r) => r.kind],
    ['Examples', (r) => r.exampleCount],
  ]);

export const deploymentsPage = (app: HTMLElement, s: Session) =>
  page(app, s, 'Deployments', 'deployments', [
    ['Model', (r) => r.model ?? r.baseModel],
    ['Replicas', (r) => r.replicaCount ?? r.minReplicaCount],
  ]);

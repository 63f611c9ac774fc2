/**
 * One dataset (its state, first lines and the API's validation of the whole file) and one
 * deployment (replicas, scaling, the hot-load target and its ledger).
 */
import { type PreviewLine, request, type Session } from '../api';
import { h, inlineForm, shortState, stateClass, table, when } from '../dom';

interface Dataset {
  name: string;
  state: string;
  kind?: string;
  exampleCount?: number;
  createTime?: string;
  [field: string]: unknown;
}

interface Validation {
  valid: boolean;
  kind: string;
  exampleCount?: number;
  message?: string;
  errors?: { code: string; line: number | null; detail: string }[];
}

export async function datasetPage(app: HTMLElement, s: Session, id: string): Promise<void> {
  const path = `/v1/accounts/${s.account}/datasets/${encodeURIComponent(id)}`;
  const ds = await request<Dataset>('GET', path);
  const preview = h('div', { id: 'dataset-preview' });
  const validation = h('div', { id: 'dataset-validation' });
  app.replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/datasets' }, 'Datasets'), ' / ', id),
    h('h1', {}, id, ' ', h('span', { class: stateClass(ds.state) }, shortState(ds.state))),
    h(
      'p',
      {},
      `${ds.kind ?? ''} · ${ds.exampleCount ?? 0} examples · created ${when(ds.createTime)}`,
    ),
    h('section', { 'aria-label': 'Validation' }, h('h2', {}, 'Validation'), validation),
    h('section', { 'aria-label': 'Preview' }, h('h2', {}, 'First lines'), preview),
  );
  if (ds.state !== 'READY') {
    preview.replaceChildren(h('p', { class: 'empty' }, 'No file uploaded yet.'));
    return;
  }
  const [lines, check] = await Promise.all([
    request<{ lines: PreviewLine[] }>('GET', `${path}/preview?limit=20`),
    request<Validation>('POST', `${path}:validate`, {}),
  ]);
  validation.replaceChildren(
    check.valid
      ? h('p', { class: 'ok' }, `Valid ${check.kind} dataset: ${check.exampleCount} examples.`)
      : h(
          'div',
          {},
          h('p', { class: 'error' }, check.message ?? 'invalid'),
          table(
            ['Line', 'Problem', 'Detail'],
            (check.errors ?? []).map((e) => [e.line ?? '', e.code, e.detail]),
            'Validation errors',
          ),
        ),
  );
  preview.replaceChildren(
    table(
      ['Line', 'Record'],
      lines.lines.map((l) => [
        l.line,
        l.error
          ? h('span', { class: 'error' }, `${l.error}: ${l.text}`)
          : h('pre', { class: 'record', tabindex: 0 }, JSON.stringify(l.record, null, 1)),
      ]),
      'Dataset preview',
    ),
  );
}

interface Deployment {
  name: string;
  state: string;
  baseModel: string;
  replicaCount: number;
  minReplicaCount: number;
  maxReplicaCount: number;
  gatewayUrl: string | null;
  hotLoadBucketUrl?: string;
  createTime: string;
  status: { reason: string | null; replicaRestarts: number };
}

interface LedgerRow {
  identity: string;
  snapshot_type: string;
  previous_snapshot_identity: string | null;
  signal_time: string;
  load_error: string | null;
  replicas: {
    replica_id: string;
    readiness_transitions: { readiness: boolean; time: string }[];
    load_error: string | null;
    timing_ms: { fetch: number; build: number; swap: number } | null;
  }[];
}

export async function deploymentPage(app: HTMLElement, s: Session, id: string): Promise<void> {
  const path = `/v1/accounts/${s.account}/deployments/${encodeURIComponent(id)}`;
  const [d, ledger] = await Promise.all([
    request<Deployment>('GET', path),
    request<{ snapshots: LedgerRow[] }>('GET', `${path}/ledger`),
  ]);
  const min = h('input', {
    id: 'scale-min',
    type: 'text',
    inputmode: 'numeric',
    value: d.minReplicaCount,
  });
  const max = h('input', {
    id: 'scale-max',
    type: 'text',
    inputmode: 'numeric',
    value: d.maxReplicaCount,
  });
  const out = h('p', { id: 'scale-result', role: 'status' });
  const scale = inlineForm(
    'Scale',
    [
      ['Min replicas', min],
      ['Max replicas', max],
    ],
    'Scale',
    () => {
      out.className = '';
      out.textContent = 'scaling…';
      const n = (v: string) => (v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v);
      request<Deployment>('PATCH', `${path}:scale`, {
        minReplicaCount: n(min.value),
        maxReplicaCount: n(max.value),
      })
        .then((next) => {
          out.textContent = `${next.replicaCount} replicas (min ${next.minReplicaCount}, max ${next.maxReplicaCount})`;
        })
        .catch((err: Error) => {
          out.className = 'error';
          out.textContent = err.message;
        });
    },
  );
  const ready = (r: LedgerRow['replicas'][number]) => {
    const last = r.readiness_transitions.at(-1);
    return r.load_error
      ? `error: ${r.load_error}`
      : last?.readiness
        ? `ready ${when(last.time)}`
        : 'loading';
  };
  app.replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/deployments' }, 'Deployments'), ' / ', id),
    h('h1', {}, id, ' ', h('span', { class: stateClass(d.state) }, shortState(d.state))),
    h(
      'dl',
      { class: 'settings' },
      h('dt', {}, 'model'),
      h('dd', {}, d.baseModel),
      h('dt', {}, 'replicas'),
      h(
        'dd',
        { id: 'replica-count' },
        `${d.replicaCount} (min ${d.minReplicaCount}, max ${d.maxReplicaCount})`,
      ),
      h('dt', {}, 'replica restarts'),
      h('dd', {}, d.status.replicaRestarts),
      h('dt', {}, 'gateway'),
      h('dd', {}, d.gatewayUrl ?? '—'),
      h('dt', {}, 'hot-load bucket'),
      h('dd', {}, d.hotLoadBucketUrl ?? '—'),
      h('dt', {}, 'created'),
      h('dd', {}, when(d.createTime)),
      d.status.reason ? [h('dt', {}, 'reason'), h('dd', {}, d.status.reason)] : [],
    ),
    h('section', { 'aria-label': 'Scaling' }, h('h2', {}, 'Scale'), scale, out),
    h(
      'section',
      { 'aria-label': 'Hot-load ledger' },
      h('h2', {}, 'Hot-load ledger'),
      ledger.snapshots.length === 0
        ? h('p', { class: 'empty' }, 'No snapshot loaded yet.')
        : table(
            ['Snapshot', 'Type', 'Previous', 'Signalled', 'Replicas', 'Error'],
            ledger.snapshots.map((r) => [
              r.identity,
              r.snapshot_type,
              r.previous_snapshot_identity ?? '',
              when(r.signal_time),
              h(
                'ul',
                { class: 'plain' },
                r.replicas.map((rep) => h('li', {}, `${rep.replica_id}: ${ready(rep)}`)),
              ),
              r.load_error ?? '',
            ]),
            'Hot-load ledger',
          ),
    ),
  );
}

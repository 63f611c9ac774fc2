/**
 * Creation forms: SFT, DPO and RFT jobs, a dataset upload, a deployment. Each posts to the
 * same REST endpoint the CLI uses and shows the server's validation message as it is: the
 * settings are checked in one place (the API's schemas), never again here. Empty fields are
 * left out, so the API's defaults apply.
 */
import { ApiFailure, listAll, request, type Session, upload } from '../api';
import { h } from '../dom';

interface Field {
  name: string;
  label: string;
  type: 'text' | 'number' | 'select';
  /**
   * Marked for assistive technology only: the browser does not block the form, so what is
   * missing gets the API's own message like any other refused value.
   */
  required?: boolean;
  /** For selects: the account's resources of this collection (plus the public catalog). */
  from?: 'models' | 'datasets' | 'evaluators';
  hint?: string;
}

const COMMON: Field[] = [
  {
    name: 'id',
    label: 'Job id',
    type: 'text',
    required: true,
    hint: 'lower-case letters, digits, -',
  },
  { name: 'baseModel', label: 'Base model', type: 'select', from: 'models', required: true },
  { name: 'dataset', label: 'Dataset', type: 'select', from: 'datasets', required: true },
  {
    name: 'outputModel',
    label: 'Output model',
    type: 'text',
    hint: 'accounts/{account}/models/{id}',
  },
  { name: 'epochs', label: 'Epochs', type: 'number' },
  { name: 'learningRate', label: 'Learning rate', type: 'number' },
  { name: 'batchSize', label: 'Batch size (tokens)', type: 'number' },
  { name: 'loraRank', label: 'LoRA rank (0: full fine-tune)', type: 'number' },
  { name: 'checkpointFrequency', label: 'Checkpoint every N steps', type: 'number' },
];

export const JOB_FORMS: Record<string, { title: string; collection: string; fields: Field[] }> = {
  sft: { title: 'New SFT job', collection: 'supervisedFineTuningJobs', fields: COMMON },
  dpo: {
    title: 'New DPO job',
    collection: 'dpoJobs',
    fields: [...COMMON, { name: 'beta', label: 'Beta', type: 'number' }],
  },
  rft: {
    title: 'New RFT job',
    collection: 'reinforcementFineTuningJobs',
    fields: [
      ...COMMON,
      { name: 'evaluator', label: 'Evaluator', type: 'select', from: 'evaluators', required: true },
      { name: 'responseCandidatesCount', label: 'Candidates per prompt', type: 'number' },
      { name: 'maxTokens', label: 'Max tokens', type: 'number' },
      { name: 'temperature', label: 'Temperature', type: 'number' },
    ],
  },
};

async function options(s: Session, from: NonNullable<Field['from']>): Promise<string[]> {
  const own = await listAll<{ name: string }>(s.account, from).catch(() => []);
  const catalog =
    from === 'evaluators' ? [] : await listAll<{ name: string }>('temper', from).catch(() => []);
  return [...own, ...catalog].map((r) => r.name);
}

function input(f: Field, choices: string[]): HTMLInputElement | HTMLSelectElement {
  const id = `f-${f.name}`;
  if (f.type === 'select')
    return h(
      'select',
      { id, name: f.name, 'aria-required': f.required ? 'true' : undefined },
      h('option', { value: '' }, f.required ? 'choose…' : '(none)'),
      choices.map((c) => h('option', { value: c }, c)),
    );
  return h('input', {
    id,
    name: f.name,
    type: 'text',
    inputmode: f.type === 'number' ? 'decimal' : undefined,
    // Numbers are sent as typed (a non-number goes to the API as text, which names the problem).
    'aria-required': f.required ? 'true' : undefined,
    'aria-describedby': f.hint ? `${id}-hint` : undefined,
  });
}

/** The value to send: numbers as numbers when they parse, else the text the user typed. */
function value(f: Field, raw: string): unknown {
  if (f.type !== 'number') return raw;
  const n = Number(raw);
  return raw.trim() !== '' && Number.isFinite(n) ? n : raw;
}

/** The id field and the body of a filled form: empty fields left out (the API's defaults). */
function collect(inputs: Map<Field, HTMLInputElement | HTMLSelectElement>) {
  const body: Record<string, unknown> = {};
  let id = '';
  for (const [f, el] of inputs) {
    if (el.value.trim() === '') continue;
    if (f.name === 'id') id = el.value.trim();
    else body[f.name] = value(f, el.value.trim());
  }
  return { id, body };
}

function formShell(title: string, fields: HTMLElement[], onSubmit: () => Promise<string>) {
  const error = h('p', { id: 'form-error', class: 'error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, 'Create');
  const form = h(
    'form',
    { class: 'card create', 'aria-label': title },
    h('h1', {}, title),
    ...fields,
    submit,
    error,
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    onSubmit()
      .then((hash) => {
        location.hash = hash;
      })
      .catch((err: Error) => {
        error.textContent = err.message;
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  return form;
}

const row = (f: Field, el: HTMLElement) =>
  h(
    'div',
    { class: 'field' },
    h('label', { for: `f-${f.name}` }, f.label),
    el,
    f.hint ? h('small', { id: `f-${f.name}-hint` }, f.hint) : '',
  );

export async function jobForm(app: HTMLElement, s: Session, kind: string): Promise<void> {
  const spec = JOB_FORMS[kind];
  if (!spec) throw new Error(`no form for ${kind}`);
  const inputs = new Map<Field, HTMLInputElement | HTMLSelectElement>();
  const rows: HTMLElement[] = [];
  for (const f of spec.fields) {
    const el = input(f, f.from ? await options(s, f.from) : []);
    inputs.set(f, el);
    rows.push(row(f, el));
  }
  const links = h(
    'p',
    { class: 'crumbs' },
    Object.entries(JOB_FORMS).flatMap(([k, v], i) => [
      i ? ' · ' : '',
      k === kind ? h('strong', {}, v.title) : h('a', { href: `#/new/${k}` }, v.title),
    ]),
  );
  app.replaceChildren(
    links,
    formShell(spec.title, rows, async () => {
      const { id, body } = collect(inputs);
      const idParam = `${spec.collection.replace(/s$/, '')}Id`;
      await request(
        'POST',
        `/v1/accounts/${s.account}/${spec.collection}?${idParam}=${encodeURIComponent(id)}`,
        body,
      );
      return `#/jobs/${spec.collection}/${encodeURIComponent(id)}`;
    }),
  );
}

/** A dataset: create it, then upload its JSONL (the API validates it and names bad lines). */
export function datasetForm(app: HTMLElement, s: Session): void {
  const idField: Field = { name: 'id', label: 'Dataset id', type: 'text', required: true };
  const id = input(idField, []);
  const file = h('input', {
    id: 'f-file',
    name: 'file',
    type: 'file',
    accept: '.jsonl,application/jsonl',
    'aria-required': 'true',
  });
  const kind = h(
    'select',
    { id: 'f-kind', name: 'kind' },
    h('option', { value: '' }, 'from the first example'),
    ['sft', 'dpo', 'rft'].map((k) => h('option', { value: k }, k)),
  );
  app.replaceChildren(
    formShell(
      'Upload a dataset',
      [
        row(idField, id),
        row({ name: 'kind', label: 'Kind', type: 'select' }, kind),
        row({ name: 'file', label: 'JSONL file', type: 'text' }, file),
      ],
      async () => {
        const chosen = file.files?.[0];
        if (!chosen) throw new Error('file: choose a JSONL file to upload');
        const dsId = id.value.trim();
        const base = `/v1/accounts/${s.account}/datasets`;
        try {
          await request('POST', `${base}?datasetId=${encodeURIComponent(dsId)}`, {
            dataset: kind.value ? { kind: kind.value } : {},
          });
        } catch (err) {
          // A dataset whose upload was refused stays UPLOADING: upload a fixed file into it.
          if (!(err instanceof ApiFailure && err.httpStatus === 409)) throw err;
          const existing = await request<{ state: string }>(
            'GET',
            `${base}/${encodeURIComponent(dsId)}`,
          );
          if (existing.state !== 'UPLOADING') throw err;
        }
        await upload(`${base}/${encodeURIComponent(dsId)}:upload`, chosen, chosen.name);
        return `#/datasets/${encodeURIComponent(dsId)}`;
      },
    ),
  );
}

/** `given`: values to start from (`#/new/deployment?baseModel=...`, from a promoted checkpoint). */
export async function deploymentForm(
  app: HTMLElement,
  s: Session,
  given: URLSearchParams = new URLSearchParams(),
): Promise<void> {
  const fields: Field[] = [
    { name: 'id', label: 'Deployment id', type: 'text', required: true },
    { name: 'baseModel', label: 'Model', type: 'select', from: 'models', required: true },
    { name: 'minReplicaCount', label: 'Min replicas', type: 'number' },
    { name: 'maxReplicaCount', label: 'Max replicas', type: 'number' },
  ];
  const inputs = new Map<Field, HTMLInputElement | HTMLSelectElement>();
  for (const f of fields) {
    const el = input(f, f.from ? await options(s, f.from) : []);
    el.value = given.get(f.name) ?? el.value;
    inputs.set(f, el);
  }
  app.replaceChildren(
    formShell(
      'New deployment',
      [...inputs].map(([f, el]) => row(f, el)),
      async () => {
        const { id, body } = collect(inputs);
        await request(
          'POST',
          `/v1/accounts/${s.account}/deployments?deploymentId=${encodeURIComponent(id)}`,
          body,
        );
        return `#/deployments/${encodeURIComponent(id)}`;
      },
    ),
  );
}

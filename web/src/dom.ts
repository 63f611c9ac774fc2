/** A tiny element builder: h('td', {class: 'x'}, 'text', child). Text is never parsed as HTML. */
type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | ((e: Event) => void) | undefined> = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat())
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function table(
  head: string[],
  rows: (Child | Child[])[][],
  label: string,
): HTMLTableElement {
  return h(
    'table',
    { 'aria-label': label },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        head.map((c) => h('th', { scope: 'col' }, c)),
      ),
    ),
    h(
      'tbody',
      {},
      rows.map((r) =>
        h(
          'tr',
          {},
          r.map((c) => h('td', {}, c)),
        ),
      ),
    ),
  );
}

export const when = (iso: string | undefined) =>
  iso ? new Date(iso).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' }) : '';

export const stateClass = (state: string) =>
  `state state-${state
    .replace('JOB_STATE_', '')
    .replace(/^STATE_/, '')
    .toLowerCase()}`;

export const shortState = (state: string) => state.replace(/^JOB_STATE_/, '');

/** A one-line form: labelled inputs (each needs an id) and a submit button. */
export function inlineForm(
  label: string,
  fields: [string, HTMLInputElement][],
  submit: string,
  onSubmit: () => void,
): HTMLFormElement {
  const form = h(
    'form',
    { class: 'filters', 'aria-label': label },
    fields.flatMap(([text, input]) => [h('label', { for: input.id }, text), input]),
    h('button', { type: 'submit' }, submit),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    onSubmit();
  });
  return form;
}

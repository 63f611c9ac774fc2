/**
 * The account's usage over a date range, from the billing export (the product's CSV): totals
 * per usage type and model, and every event.
 */
import { requestText, type Session } from '../api';
import { h, inlineForm, table } from '../dom';

/** RFC 4180 rows (quoted cells may hold commas, quotes and line breaks). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else if (c !== '\r') cell += c;
  }
  if (cell !== '' || row.length) rows.push([...row, cell]);
  return rows;
}

const day = (d: Date) => d.toISOString().slice(0, 10);

export async function usagePage(app: HTMLElement, s: Session): Promise<void> {
  const now = new Date();
  const start = h('input', {
    id: 'usage-start',
    type: 'date',
    value: day(new Date(now.getTime() - 6 * 86_400_000)),
  });
  const end = h('input', {
    id: 'usage-end',
    type: 'date',
    value: day(new Date(now.getTime() + 86_400_000)),
  });
  const out = h('div', { id: 'usage' });
  const load = async () => {
    try {
      const q = new URLSearchParams({ startTime: start.value, endTime: end.value });
      const [head, ...rows] = parseCsv(
        await requestText(`/v1/accounts/${s.account}/billing:exportMetrics?${q}`),
      );
      const col = (name: string) => head!.indexOf(name);
      const totals = new Map<
        string,
        { seconds: number; prompt: number; completion: number; n: number }
      >();
      for (const r of rows) {
        const key = `${r[col('usage_type')]} · ${r[col('base_model_name')] || '—'}`;
        const t = totals.get(key) ?? { seconds: 0, prompt: 0, completion: 0, n: 0 };
        t.seconds += Number(r[col('accelerator_seconds')] || 0);
        t.prompt += Number(r[col('prompt_tokens')] || 0);
        t.completion += Number(r[col('completion_tokens')] || 0);
        t.n += 1;
        totals.set(key, t);
      }
      out.replaceChildren(
        rows.length === 0
          ? h('p', { class: 'empty' }, 'No usage in this range.')
          : table(
              [
                'Usage · model',
                'Events',
                'Accelerator seconds',
                'Prompt tokens',
                'Completion tokens',
              ],
              [...totals].map(([k, t]) => [k, t.n, t.seconds.toFixed(1), t.prompt, t.completion]),
              'Usage totals',
            ),
        rows.length
          ? h(
              'details',
              {},
              h('summary', {}, `${rows.length} events`),
              table(head!, rows, 'Usage events'),
            )
          : '',
      );
    } catch (err) {
      out.replaceChildren(h('p', { class: 'error', role: 'alert' }, (err as Error).message));
    }
  };
  const form = inlineForm(
    'Range',
    [
      ['From', start],
      ['To', end],
    ],
    'Show',
    () => void load(),
  );
  app.replaceChildren(h('h1', {}, 'Usage'), form, out);
  await load();
}

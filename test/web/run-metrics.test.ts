/**
 * RunMetrics: the dashboard's columns of one run's metric rows, filled from
 * `?format=columns` and then from the events stream's rows (appended, replaced or inserted by
 * step). The browser test sees the result as points on a chart; this checks the columns.
 */
import { describe, expect, it } from 'vitest';
import { RunMetrics } from '../../web/src/run-metrics.js';

const t = (s: number) => Date.UTC(2026, 0, 1, 0, 0, s);
const iso = (s: number) => new Date(t(s)).toISOString();

describe('RunMetrics', () => {
  it('keeps the columns it is first given, strings and missing values as gaps', () => {
    const steps = [1, 2, 3];
    const loss = [2.5, 'nan?', 1.5];
    const m = new RunMetrics();
    m.addColumns({
      steps,
      timesMs: [t(1), t(2), t(3)],
      values: { 'loss:mean': loss, note: ['a', null, 'b'] },
    });
    expect(m.steps).toBe(steps);
    expect(m.values.get('loss:mean')).toBe(loss);
    expect(loss).toEqual([2.5, null, 1.5]);
    expect(m.values.get('note')).toEqual([null, null, null]);
    expect([...m.numeric]).toEqual(['loss:mean']);
    expect(m.size).toBe(3);
  });

  it('appends rows past the last step, replaces a step sent again, inserts one in between', () => {
    const m = new RunMetrics();
    m.addColumns({ steps: [2, 4], timesMs: [t(2), t(4)], values: { 'loss:mean': [2, 1] } });
    m.addRows([
      // step 4 again, eval merged in (the whole row comes again)
      { step: 4, values: { 'loss:mean': 0.9, 'eval_loss:mean': 1.2 }, time: iso(5) },
      { step: 6, values: { 'loss:mean': 0.5 }, time: iso(6) },
      { step: 3, values: { 'loss:mean': 1.5 }, time: iso(3) },
    ]);
    expect(m.steps).toEqual([2, 3, 4, 6]);
    expect(m.timesMs).toEqual([t(2), t(3), t(5), t(6)]);
    expect(m.values.get('loss:mean')).toEqual([2, 1.5, 0.9, 0.5]);
    expect(m.values.get('eval_loss:mean')).toEqual([null, null, 1.2, null]);
    expect([...m.numeric].sort()).toEqual(['eval_loss:mean', 'loss:mean']);
    // A row sent again without a key it had: that value is gone.
    m.addRows([{ step: 4, values: { 'loss:mean': 0.8 }, time: iso(7) }]);
    expect(m.values.get('eval_loss:mean')).toEqual([null, null, null, null]);
  });

  it('reads columns out of step order row by row', () => {
    const m = new RunMetrics();
    m.addColumns({ steps: [5, 1], timesMs: [t(5), t(1)], values: { kl: [0.5, 0.1] } });
    expect(m.steps).toEqual([1, 5]);
    expect(m.values.get('kl')).toEqual([0.1, 0.5]);
  });
});

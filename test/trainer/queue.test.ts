// The per-model operation queue: seq order, idempotent repeats, failures that never block, gaps.
import { describe, expect, it } from 'vitest';
import { TrainerError } from '../../src/trainer/errors.js';
import { OpQueue } from '../../src/trainer/queue.js';

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('OpQueue', () => {
  it('runs operations in seq_id order whatever order they arrive in', async () => {
    const q = new OpQueue({ name: 'm' });
    const ran: number[] = [];
    const op = (n: number) =>
      q.submit(n, 'op', async () => {
        ran.push(n);
        await tick();
        return n * 10;
      });
    const results = await Promise.all([op(3), op(1), op(4), op(2)]);
    expect(results).toEqual([30, 10, 40, 20]);
    expect(ran).toEqual([1, 2, 3, 4]);
    expect(q.nextSeqId).toBe(5);
  });

  it('answers a repeated seq_id with the same result without running it again', async () => {
    const q = new OpQueue({ name: 'm' });
    let runs = 0;
    const run = async () => {
      runs++;
      await tick();
      return { value: runs };
    };
    const [a, b] = await Promise.all([q.submit(1, 'step', run), q.submit(1, 'step', run)]);
    const c = await q.submit(1, 'step', run);
    expect(runs).toBe(1);
    expect(a).toBe(b);
    expect(c).toBe(a);
  });

  it('repeats a failure, and a failure never blocks the next operation', async () => {
    const q = new OpQueue({ name: 'm' });
    let runs = 0;
    const fail = () => {
      runs++;
      throw new TrainerError('no_gradients', 'nothing to step');
    };
    const first = q.submit(1, 'step', fail);
    const next = q.submit(2, 'op', () => 'ok');
    await expect(first).rejects.toMatchObject({ code: 'no_gradients' });
    await expect(q.submit(1, 'step', fail)).rejects.toMatchObject({ code: 'no_gradients' });
    expect(runs).toBe(1);
    await expect(next).resolves.toBe('ok');
  });

  it('refuses a seq_id reused for another kind, an expired one, and a non-positive one', async () => {
    const q = new OpQueue({ name: 'm', resultCacheSize: 2 });
    for (let i = 1; i <= 4; i++) await q.submit(i, 'op', () => i);
    await expect(q.submit(4, 'other', () => 0)).rejects.toMatchObject({ code: 'seq_conflict' });
    await expect(q.submit(1, 'op', () => 0)).rejects.toMatchObject({ code: 'seq_expired' });
    await expect(q.submit(0, 'op', () => 0)).rejects.toMatchObject({ code: 'invalid_argument' });
  });

  it('fails an operation whose predecessor never arrives, without consuming its seq_id', async () => {
    const q = new OpQueue({ name: 'm', gapTimeoutMs: 30 });
    await expect(q.submit(2, 'op', () => 2)).rejects.toMatchObject({ code: 'seq_gap' });
    expect(q.nextSeqId).toBe(1);
    await expect(q.submit(1, 'op', () => 1)).resolves.toBe(1);
    await expect(q.submit(2, 'op', () => 22)).resolves.toBe(22);
  });

  it('close() fails waiting operations and refuses new ones; the running one finishes', async () => {
    const q = new OpQueue({ name: 'm' });
    let release!: () => void;
    const running = q.submit(
      1,
      'op',
      () =>
        new Promise<string>((r) => {
          release = () => r('done');
        }),
    );
    const waiting = q.submit(3, 'op', () => 'never');
    q.close(new TrainerError('shutting_down', 'bye'));
    await expect(waiting).rejects.toMatchObject({ code: 'shutting_down' });
    await expect(q.submit(2, 'op', () => 'x')).rejects.toMatchObject({ code: 'shutting_down' });
    const idle = q.idle();
    release();
    await expect(running).resolves.toBe('done');
    await idle;
  });
});

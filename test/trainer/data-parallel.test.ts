// The pieces of data parallelism below the pods: the fixed batch split and the root's
// bookkeeping of collective groups (which prefix a rank joins under; a rank asking again
// while a group is formed starts a new epoch). The collectives themselves: collectives.test.ts;
// replicas end to end: test/sdk/data-parallel.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { DataParallelGroups, shardRanges } from '../../src/trainer/data-parallel.js';
import { TrainerError } from '../../src/trainer/errors.js';

describe('data parallelism', () => {
  it('splits a batch into contiguous blocks in rank order', () => {
    expect(shardRanges(5, 2)).toEqual([
      [0, 2],
      [2, 5],
    ]);
    expect(shardRanges(1, 3)).toEqual([
      [0, 0],
      [0, 0],
      [0, 1],
    ]);
    expect(shardRanges(6, 1)).toEqual([[0, 6]]);
  });

  let groups: DataParallelGroups | undefined;
  afterEach(() => groups?.close(new TrainerError('shutting_down', 'test over')));

  it('answers joining ranks with its store and one prefix per group formation', () => {
    groups = new DataParallelGroups({
      host: '127.0.0.1',
      timeoutMs: 1_000,
      askRoot: () => Promise.reject(new Error('a root never asks')),
    });
    const a = groups.join('m1', 1, 3);
    const b = groups.join('m1', 2, 3);
    expect(a.storePort).toBeGreaterThan(0);
    expect(b).toEqual(a);
    expect(groups.join('m2', 1, 2).prefix).not.toBe(a.prefix);
    expect(() => groups!.join('m1', 0, 3)).toThrow(/rank 0 is not in \[1, 3\)/);
    expect(() => groups!.join('m1', 1, 1)).toThrow(TrainerError);
  });
});

// The async RL loop's rollout schedule: each step's rollouts start exactly once, in order,
// only on a served version at most max_staleness behind (the loop once restarted a step's
// rollouts after consuming them, doubling the deployment's work).
import { describe, expect, it } from 'vitest';
import { RolloutSchedule } from '../../src/recipes/async-rl/rollout-schedule.js';

/** The loop's calls: due() before and after each update, the version rising by one a step. */
function simulate(first: number, maxSteps: number, maxStaleness: number) {
  const due = new RolloutSchedule(first, maxSteps, maxStaleness);
  const started: { step: number; version: number }[] = [];
  const take = (version: number) => {
    for (const s of due.due(version)) started.push({ step: s, version });
  };
  for (let step = first; step < maxSteps; step++) {
    // before the step: the version of the step before it may still be loading
    take(step - 1 >= first ? step - 1 : step);
    if (!due.started(step)) take(step);
    expect(due.started(step)).toBe(true);
    // after this step's update the version `step` is served, and again (the loop calls twice)
    take(step);
    take(step);
  }
  return started;
}

describe('RolloutSchedule', () => {
  it('starts every step once, in order, never more than max_staleness versions behind', () => {
    for (const maxStaleness of [0, 1, 2, 4])
      for (const first of [0, 3]) {
        const started = simulate(first, 12, maxStaleness);
        expect(started.map((s) => s.step)).toEqual(
          Array.from({ length: 12 - first }, (_, i) => first + i),
        );
        for (const s of started) expect(s.step - s.version).toBeLessThanOrEqual(maxStaleness);
        if (maxStaleness > 0)
          expect(Math.max(...started.map((s) => s.step - s.version))).toBe(maxStaleness);
      }
  });

  it('gives nothing again for the same version, and nothing past max_steps', () => {
    const due = new RolloutSchedule(0, 3, 1);
    expect(due.due(0)).toEqual([0, 1]);
    expect(due.due(0)).toEqual([]);
    expect(due.due(1)).toEqual([2]);
    expect(due.due(5)).toEqual([]);
    expect(due.started(2)).toBe(true);
    expect(due.started(3)).toBe(false);
  });
});

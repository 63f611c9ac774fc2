/**
 * When the async RL loop may start each step's rollouts: every step exactly once, in step
 * order, as soon as the deployment serves a policy version at least `step − maxStaleness`
 * (so no step trains on rollouts more than maxStaleness versions behind). Pure bookkeeping,
 * kept apart from the loop so that "once, in order, never too stale" is tested on its own.
 */
export class RolloutSchedule {
  private next: number;

  /** `first`: the first step still to train (a resumed run's step). */
  constructor(
    first: number,
    private readonly maxSteps: number,
    private readonly maxStaleness: number,
  ) {
    this.next = first;
  }

  /** The steps whose rollouts may start now that `version` is served; each is given once. */
  due(version: number): number[] {
    const steps: number[] = [];
    while (this.next < this.maxSteps && this.next - this.maxStaleness <= version)
      steps.push(this.next++);
    return steps;
  }

  /** Whether step `step`'s rollouts have been given out by `due`. */
  started(step: number): boolean {
    return step < this.next;
  }
}

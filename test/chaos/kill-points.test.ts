// Chaos (issue 14): 10 kill -9s of the trainer pod at seeded random points of one managed SFT
// job on the bundled model, on the real platform parts (Temporal dev server, worker, SQLite,
// local pods). Each kill point is a training step to reach plus a delay after it; a kill can
// land mid-step, mid-checkpoint, while a new pod restores, or right after it starts. The
// workflow relaunches the pod from the last checkpoint up to its restart limit; the kill past
// the limit fails the job, which is then resumed as `:resume` does. The final weights must be
// bitwise those of the same job run without interruption. The seed is printed; set
// TEMPER_CHAOS_SEED to replay a plan.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRef } from '../../src/control-plane/orchestrator.js';
import { seededRandom } from '../../src/util/seeded-random.js';
import { workflowIdOf } from '../../src/workflows/types.js';
import { startTestPlatform, type TestPlatform, waitFor } from '../support/platform.js';
import { createStoredSftJob, resumeStoredJob } from '../support/stored-jobs.js';

const KILLS = 10;
const SEED = Number(process.env.TEMPER_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));

let platform: TestPlatform;

beforeAll(async () => {
  platform = await startTestPlatform();
}, 120_000);

afterAll(async () => {
  await platform?.close();
});

const body = (ref: JobRef) => platform.jobBody(ref);
const progressStep = (b: Record<string, unknown>) =>
  (b.jobProgress as { step?: number } | undefined)?.step ?? 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('chaos: kill -9 of the trainer pod at 10 random points of one job', () => {
  it('resumes every time and ends with bitwise the weights of an uninterrupted run', async () => {
    const plain = await createStoredSftJob(platform, 'chaos-plain');
    await platform.orchestrator.start(plain);
    await platform.client.workflow.getHandle(workflowIdOf(plain)).result();
    const plainJob = await body(plain);
    expect(plainJob.state).toBe('JOB_STATE_COMPLETED');
    const totalSteps = (plainJob.jobProgress as { totalSteps: number }).totalSteps;
    expect(totalSteps).toBeGreaterThanOrEqual(4);
    const uninterrupted = await platform.modelWeights('acme', 'chaos-plain-model');

    // The plan: a step to reach (before the last, so the job cannot finish first) and a delay.
    const random = seededRandom(SEED);
    const plan = Array.from({ length: KILLS }, () => ({
      step: 1 + Math.floor(random() * (totalSteps - 2)),
      delayMs: Math.floor(random() * 400),
    })).sort((a, b) => a.step - b.step || a.delayMs - b.delayMs);
    process.stdout.write(
      `chaos seed ${SEED} (TEMPER_CHAOS_SEED=${SEED} replays it): ${totalSteps} steps, kills at ${plan
        .map((p) => `step ${p.step}+${p.delayMs}ms`)
        .join(', ')}\n`,
    );

    const ref = await createStoredSftJob(platform, 'chaos-killed');
    await platform.orchestrator.start(ref);
    const killed = new Set<number>();
    let resumes = 0;
    const explain = async () => {
      const b = await body(ref);
      return `job: ${b.state} at step ${progressStep(b)}, ${resumes} resumes: ${b.message ?? ''}\n${await platform.podReport(killed)}`;
    };
    for (const point of plan) {
      // The job's pod once it has reached the point's step; a failed job (restart limit) resumes.
      const pid = await waitFor(
        `a pod of ${ref.id} at step ${point.step} (kill ${killed.size + 1} of ${KILLS}, seed ${SEED})`,
        async () => {
          const b = await body(ref);
          if (b.state === 'JOB_STATE_FAILED') {
            await resumeStoredJob(platform, ref);
            resumes++;
            return undefined;
          }
          expect(b.state, `the job ended before kill ${killed.size + 1} (seed ${SEED})`).not.toBe(
            'JOB_STATE_COMPLETED',
          );
          if (progressStep(b) < point.step) return undefined;
          const pod = (await platform.launcher.list()).find(
            (p) => p.state === 'running' && p.pid !== undefined && !killed.has(p.pid),
          );
          return pod?.pid;
        },
        120_000,
        explain,
      );
      await sleep(point.delayMs);
      try {
        process.kill(pid, 'SIGKILL');
      } catch (error) {
        // The pod ended by itself within the delay: a crash or a stop, which the report names.
        throw new Error(
          `pod ${pid} was gone before kill ${killed.size + 1} (seed ${SEED}): ${String(error)}\n${await platform.podReport(killed)}`,
        );
      }
      killed.add(pid);
    }
    expect(killed.size).toBe(KILLS);

    const job = await waitFor(
      `${ref.id} to complete after ${KILLS} kills (seed ${SEED})`,
      async () => {
        const b = await body(ref);
        if (b.state === 'JOB_STATE_FAILED') {
          await resumeStoredJob(platform, ref);
          resumes++;
          return undefined;
        }
        return b.state === 'JOB_STATE_COMPLETED' ? b : undefined;
      },
      240_000,
      explain,
    );
    // One run takes at most 5 relaunches: 10 kills need at least one resume.
    expect(resumes).toBeGreaterThanOrEqual(1);
    expect((job.jobProgress as { step: number }).step).toBe(totalSteps);
    const weights = await platform.modelWeights('acme', 'chaos-killed-model');
    expect(weights.equals(uninterrupted), `weights differ (seed ${SEED})`).toBe(true);
  }, 600_000);
});

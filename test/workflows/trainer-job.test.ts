// rlorTrainerJobs: the trainer lifecycle workflow launches the pod a Training API client
// drives; pod loss marks the job FAILED (resumable), resume brings a new pod under the same id,
// inactivity completes it, cancel (delete) stops it.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRef } from '../../src/control-plane/orchestrator.js';
import { ServiceClient } from '../../src/sdk/index.js';
import { workflowIdOf } from '../../src/workflows/types.js';
import { startTestPlatform, type TestPlatform, waitFor } from '../support/platform.js';
import { resumeStoredJob } from '../support/stored-jobs.js';

let platform: TestPlatform;

beforeAll(async () => {
  platform = await startTestPlatform();
}, 120_000);

afterAll(async () => {
  await platform?.close();
});

async function createTrainer(id: string, extra: Record<string, unknown> = {}): Promise<JobRef> {
  const ref: JobRef = { collection: 'rlorTrainerJobs', account: 'acme', id };
  await platform.store.create(ref.collection, ref.account, ref.id, {
    state: 'JOB_STATE_PENDING',
    baseModel: 'accounts/temper/models/byte-lm-3m',
    loraRank: 0,
    inactivityTimeout: '3600s',
    ...extra,
  });
  return ref;
}

/** The job's body once it is in `state`. */
function waitForState(ref: JobRef, state: string, timeoutMs = 60_000) {
  return waitFor(
    `${ref.id} to be ${state}`,
    async () => {
      const body = await platform.jobBody(ref);
      return body.state === state ? body : undefined;
    },
    timeoutMs,
  );
}

function service(jobId: string) {
  return ServiceClient.fromConfig(
    {
      baseModel: 'accounts/temper/models/byte-lm-3m',
      trainerJobId: jobId,
      account: 'acme',
      learningRate: 1e-3,
      checkpointUrl: platform.checkpoints.url,
    },
    { launcher: platform.launcher },
  );
}

/**
 * Everything Temporal keeps of the job's current run, as text: the history's events with every
 * payload (activity inputs and results, workflow input and result) decoded.
 */
async function historyText(ref: JobRef): Promise<string> {
  const history = await platform.client.workflow.getHandle(workflowIdOf(ref)).fetchHistory();
  const parts: string[] = [];
  const walk = (value: unknown): void => {
    if (value instanceof Uint8Array) parts.push(Buffer.from(value).toString('utf8'));
    else if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') Object.values(value).forEach(walk);
    else if (typeof value === 'string') parts.push(value);
  };
  walk(history.events);
  return parts.join('\n');
}

/** The job's row as the database file holds it, read around the store. */
function storedRow(ref: JobRef): string {
  const db = new Database(join(platform.dir, 'temper.db'), { readonly: true });
  try {
    const row = db
      .prepare('SELECT body FROM resources WHERE collection = ? AND account = ? AND id = ?')
      .get(ref.collection, ref.account, ref.id) as { body: string };
    return row.body;
  } finally {
    db.close();
  }
}

const tokens = Array.from(Buffer.from('Q: capital of Peru? A: Lima'));
const datum = {
  modelInput: tokens.slice(0, -1),
  lossFnInputs: { target_tokens: tokens.slice(1), weights: tokens.slice(1).map(() => 1) },
};

describe('rlorTrainerJob lifecycle workflow', () => {
  it('serves a trainer, survives pod loss through resume, and stops on cancel', async () => {
    const ref = await createTrainer('tr-main');
    await platform.orchestrator.start(ref);
    const running = await waitForState(ref, 'JOB_STATE_RUNNING');
    expect(running.trainerAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    // The pod's token is published with its address (only the job's account reads the row).
    expect(running.trainerToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(running.trainerToken).toBe((await platform.launcher.get('tr-main'))?.token);
    // ...but it rests sealed in the row, and Temporal's history never holds it (the launch
    // activity writes it to the store instead of returning it to the workflow).
    const launched = await historyText(ref);
    expect(launched).toContain(running.trainerAddress as string);
    expect(launched).not.toContain(running.trainerToken);
    expect(storedRow(ref)).toContain('sealedTrainerToken');
    expect(storedRow(ref)).not.toContain(running.trainerToken);

    const first = service('tr-main');
    const client = await first.createTrainingClient();
    await client.forwardBackward([datum], 'cross_entropy');
    await client.optimStep({});
    const saved = await client.saveState('after-one');
    expect(saved.path).toBe('accounts/acme/rlorTrainerJobs/tr-main/checkpoints/after-one');
    await first.close();

    // Preemption: the pod dies; the job says so and can be resumed.
    const pod = (await platform.launcher.get('tr-main'))!;
    process.kill(pod.pid!, 'SIGKILL');
    const lost = await waitForState(ref, 'JOB_STATE_FAILED');
    expect((lost.status as { message: string }).message).toMatch(/trainer lost/);
    await resumeStoredJob(platform, ref);
    const again = await waitForState(ref, 'JOB_STATE_RUNNING');
    // A new pod, a new token: the old one opens nothing.
    expect(again.trainerToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(again.trainerToken).not.toBe(running.trainerToken);
    const second = service('tr-main');
    const resumed = await second.createTrainingClient();
    const loaded = await resumed.loadStateWithOptimizer(saved.path);
    expect(loaded.step).toBe(1);
    await second.close();

    await platform.orchestrator.cancel(ref);
    const cancelled = await waitForState(ref, 'JOB_STATE_CANCELLED');
    expect(cancelled.trainerAddress ?? null).toBeNull();
    expect(cancelled.trainerToken ?? null).toBeNull();
    expect(storedRow(ref)).not.toContain('sealedTrainerToken');
    const resumedRun = await historyText(ref);
    expect(resumedRun).toContain(again.trainerAddress as string);
    expect(resumedRun).not.toContain(again.trainerToken);
    const after = await platform.launcher.get('tr-main');
    expect(['stopped', 'failed']).toContain(after?.state);
  }, 180_000);

  it('completes when the trainer stops after its inactivity timeout', async () => {
    const ref = await createTrainer('tr-idle', { inactivityTimeout: '2s' });
    await platform.orchestrator.start(ref);
    await waitForState(ref, 'JOB_STATE_RUNNING');
    const done = await waitForState(ref, 'JOB_STATE_COMPLETED', 30_000);
    expect((done.status as { message: string }).message).toMatch(/inactivity/);
    await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    const usage = (
      await platform.store.listUsage('acme', {
        startTime: '2020-01-01T00:00:00Z',
        endTime: '2100-01-01T00:00:00Z',
      })
    ).filter((u) => u.source === workflowIdOf(ref));
    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({ usageType: 'TRAINER_USAGE', acceleratorType: 'CPU' });
    expect(usage[0]!.acceleratorSeconds!).toBeGreaterThan(1);
  }, 60_000);

  it('fails, with no pod left, where the store has no secrets key to seal the pod’s token', async () => {
    const keyless = await startTestPlatform({ secretsKey: false });
    try {
      const ref: JobRef = { collection: 'rlorTrainerJobs', account: 'acme', id: 'tr-keyless' };
      await keyless.store.create(ref.collection, ref.account, ref.id, {
        state: 'JOB_STATE_PENDING',
        baseModel: 'accounts/temper/models/byte-lm-3m',
        loraRank: 0,
        inactivityTimeout: '3600s',
      });
      await keyless.orchestrator.start(ref);
      const failed = await waitFor(
        'the keyless job to fail',
        async () => {
          const body = await keyless.jobBody(ref);
          return body.state === 'JOB_STATE_FAILED' ? body : undefined;
        },
        60_000,
      );
      expect((failed.status as { message: string }).message).toMatch(
        /cannot store the trainer token of accounts\/acme\/rlorTrainerJobs\/tr-keyless: this temper has no secrets key/,
      );
      expect(failed.trainerToken ?? null).toBeNull();
      // The pod it launched is stopped (and the launch is not retried: it would fail alike).
      const pod = await keyless.launcher.get('tr-keyless');
      expect(['stopped', 'failed']).toContain(pod?.state);
    } finally {
      await keyless.close();
    }
  }, 90_000);

  it('launches the pod with the job’s engine settings (baseDtype, recompute)', async () => {
    const ref = await createTrainer('tr-bf16', {
      loraRank: 8,
      baseDtype: 'bfloat16',
      recompute: true,
    });
    await platform.orchestrator.start(ref);
    await waitForState(ref, 'JOB_STATE_RUNNING');
    const pod = (await platform.launcher.get('tr-bf16'))!;
    expect(pod.spec.engine).toEqual({ baseDtype: 'bfloat16', recompute: true });
    // What the pod itself runs with (it writes its settings into its state file).
    const state = JSON.parse(await readFile(join(dirname(pod.logPath!), 'state.json'), 'utf8'));
    expect(state.engine).toEqual({ baseDtype: 'bfloat16', recompute: true });
    await platform.orchestrator.cancel(ref);
    await waitForState(ref, 'JOB_STATE_CANCELLED');
  }, 60_000);
});

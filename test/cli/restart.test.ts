// The whole embedded stack restarted in the middle of a job (`temper up`, SIGTERM, `temper up`
// again on the same data directory): Temporal's history and the store survive, the job's
// pod is replaced from its last checkpoint, and the job completes. A deployment made before
// the restart is back and serving after it (deployments are rows of the store).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startUp, temper, type UpProcess } from './support.js';

let home: string;
const ups: UpProcess[] = [];

afterAll(async () => {
  for (const up of ups) if (up.child.exitCode === null) up.child.kill('SIGKILL');
  if (home) await rm(home, { recursive: true, force: true });
});

async function job(env: Record<string, string>): Promise<Record<string, unknown>> {
  const r = await temper(['get', 'sftj', 'long', '-o', 'json'], env);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

describe('temper up restarted mid-job', () => {
  it('resumes the job from its last checkpoint and completes it', async () => {
    home = await mkdtemp(join(tmpdir(), 'temper-restart-'));
    const env = { TEMPER_HOME: home };
    ups.push(await startUp(home));
    const data = 'catalog/accounts/temper/datasets/sure-answers-sft.jsonl';
    expect((await temper(['dataset', 'create', 'answers', data], env)).code).toBe(0);
    const dep = await temper(
      ['deployment', 'create', 'accounts/temper/models/byte-lm-3m', '--deployment-id', 'kept'],
      env,
    );
    expect(dep.code, dep.stderr).toBe(0);
    const created = await temper(
      ['create', 'sftj', '--base-model', 'accounts/temper/models/byte-lm-3m']
        .concat(['--dataset', 'answers', '--job-id', 'long', '--lora-rank', '0'])
        .concat(['--epochs', '6', '--batch-size', '512', '--checkpoint-frequency', '5']),
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    for (;;) {
      const body = await job(env);
      if ((body.lastCheckpoint as { step: number } | undefined)?.step) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    ups[0]!.child.kill('SIGTERM');
    expect(await ups[0]!.exited).toBe(0);

    ups.push(await startUp(home));
    const back = await temper(['get', 'deployment', 'kept', '-o', 'json'], env);
    expect(back.code, back.stderr).toBe(0);
    expect(JSON.parse(back.stdout)).toMatchObject({
      name: 'accounts/default/deployments/kept',
      state: 'READY',
      replicaCount: 1,
    });
    let body = await job(env);
    for (let i = 0; i < 600 && !/COMPLETED|FAILED|CANCELLED/.test(String(body.state)); i++) {
      await new Promise((r) => setTimeout(r, 300));
      body = await job(env);
    }
    // On failure: the job's message and what the restarted stack logged (warnings name why).
    const why = () => `${JSON.stringify(body)}\n${ups[1]!.stderr.slice(-40).join('\n')}`;
    expect(body.state, why()).toBe('JOB_STATE_COMPLETED');
    expect(body.trainerRestarts).toBeGreaterThanOrEqual(1);
    expect((body.restoredFrom as { step: number }).step).toBeGreaterThanOrEqual(5);
    ups[1]!.child.kill('SIGTERM');
    expect(await ups[1]!.exited).toBe(0);
  }, 300_000);
});

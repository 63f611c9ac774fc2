// Managed RFT end to end: rollouts through a hot-loaded deployment, an uploaded evaluator
// module, group advantages, GRPO steps on a LoRA trainer, promotion; and early stopping.
// (Remote environments: test/e2e/eval-protocol.test.ts, with eval-protocol's own server.)
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRef } from '../../src/control-plane/orchestrator.js';
import { workflowIdOf } from '../../src/workflows/types.js';
import { putEvaluator } from '../support/evaluators.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';

let platform: TestPlatform;

beforeAll(async () => {
  platform = await startTestPlatform();
  const prompts = ['What is the capital of Peru?', 'What color is snow?', 'What is 2+2?'];
  await platform.artifacts.put(
    'accounts/acme/datasets/questions/data.jsonl',
    prompts
      .map((q, i) =>
        JSON.stringify({ messages: [{ role: 'user', content: q }], ground_truth: `answer-${i}` }),
      )
      .join('\n'),
  );
  await platform.artifacts.put(
    'accounts/acme/datasets/held-out/data.jsonl',
    ['What is the capital of Japan?', 'What color is grass?']
      .map((q) => JSON.stringify({ messages: [{ role: 'user', content: q }] }))
      .join('\n'),
  );
  // Rewards answers that start politely; a constant evaluator for the early-stop case.
  await putEvaluator(platform, 'acme', 'polite', {
    'polite.mjs':
      'export default ({ completion }) => ({ score: /^\\s*Sure/.test(completion) ? 1 : completion.length > 20 ? 0.5 : 0, reason: "prefix" });',
  });
  await putEvaluator(platform, 'acme', 'constant', {
    'constant.mjs': 'export function evaluate() { return 1; }',
  });
}, 120_000);

afterAll(async () => {
  await platform?.close();
});

async function createRftJob(
  id: string,
  evaluator: string,
  epochs: number,
  extra: Record<string, unknown> = {},
): Promise<JobRef> {
  const ref: JobRef = { collection: 'reinforcementFineTuningJobs', account: 'acme', id };
  await platform.store.create(ref.collection, ref.account, ref.id, {
    state: 'JOB_STATE_PENDING',
    baseModel: 'accounts/temper/models/byte-lm-3m',
    dataset: 'accounts/acme/datasets/questions',
    evaluator: `accounts/acme/evaluators/${evaluator}`,
    outputModel: `accounts/acme/models/${id}`,
    epochs,
    learningRate: 1e-3,
    loraRank: 4,
    n: 4,
    temperature: 1,
    maxTokens: 24,
    seed: 5,
    ...extra,
  });
  return ref;
}

const body = (ref: JobRef) => platform.jobBody(ref);

describe('managed RFT job workflow', () => {
  it('rolls out through a deployment, scores, steps with GRPO and promotes the adapter', async () => {
    const ref = await createRftJob('rft-polite', 'polite', 2, {
      evaluationDataset: 'accounts/acme/datasets/held-out',
      checkpointFrequency: 1,
    });
    await platform.orchestrator.start(ref);
    await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    const job = await body(ref);
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    const metrics = await platform.store.listMetrics(workflowIdOf(ref));
    expect(metrics.map((m) => m.step)).toEqual([1, 2]);
    // The evaluation dataset is scored at every segment end (one step each here).
    for (const m of metrics) {
      expect(m.values['eval_reward:mean']).toBeGreaterThanOrEqual(0);
      expect(m.values['eval_reward:mean']).toBeLessThanOrEqual(1);
    }
    expect(job.evaluationExampleCount).toBe(2);
    for (const m of metrics) {
      expect(m.values['rollouts:sum']).toBe(12);
      expect(m.values['reward:mean']).toBeGreaterThanOrEqual(0);
      expect(m.values['reward:mean']).toBeLessThanOrEqual(1);
    }
    const rollouts = (
      await platform.artifacts.get(`${workflowIdOf(ref)}/rollouts/step-000001.jsonl`)
    )
      .toString()
      .split('\n')
      .map((l) => JSON.parse(l) as { score: number; reason: string; snapshot: string });
    expect(rollouts).toHaveLength(12);
    expect(rollouts.every((r) => r.reason === 'prefix' && r.snapshot)).toBe(true);
    const tokens = (
      await platform.store.listUsage('acme', {
        startTime: '2020-01-01T00:00:00Z',
        endTime: '2100-01-01T00:00:00Z',
      })
    ).filter(
      (u) => u.source === workflowIdOf(ref) && u.usageType === 'TEXT_COMPLETION_INFERENCE_USAGE',
    );
    expect(tokens).toHaveLength(2);
    expect(tokens.every((u) => (u.promptTokens ?? 0) > 0 && (u.completionTokens ?? 0) > 0)).toBe(
      true,
    );
    const model = await platform.store.get<Record<string, unknown>>('models', 'acme', 'rft-polite');
    expect(model?.body).toMatchObject({ kind: 'HF_PEFT_ADDON' });
    // The rollout deployment is gone with the trainer.
    expect((await platform.launcher.list()).filter((p) => p.state === 'running')).toEqual([]);
  }, 300_000);

  it('stops early when every rollout of an epoch scored the same', async () => {
    const ref = await createRftJob('rft-constant', 'constant', 3);
    await platform.orchestrator.start(ref);
    const result = await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    expect(result.steps).toBe(1);
    const job = await body(ref);
    expect(job.state).toBe('JOB_STATE_EARLY_STOPPED');
    const metrics = await platform.store.listMetrics(workflowIdOf(ref));
    expect(metrics[0]!.values['groups_dropped:sum']).toBe(3);
    expect(job.outputModel).toBe('accounts/acme/models/rft-constant');
  }, 300_000);

  it('fails creation-time checks for an evaluator that does not exist', async () => {
    const ref = await createRftJob('rft-missing', 'nope', 1);
    await platform.orchestrator.start(ref);
    await expect(platform.client.workflow.getHandle(workflowIdOf(ref)).result()).rejects.toThrow();
    expect(((await body(ref)).status as { message: string }).message).toBe(
      "Evaluator 'nope' not found in account",
    );
  }, 120_000);
});

describe('malicious evaluators in a real RFT job', () => {
  const rolloutsOf = async (ref: JobRef) =>
    (await platform.artifacts.get(`${workflowIdOf(ref)}/rollouts/step-000001.jsonl`))
      .toString()
      .split('\n')
      .map((l) => JSON.parse(l) as { score: number; valid: boolean; reason: string });

  it("cannot read the store, credentials, another account's data or the worker's env", async () => {
    await platform.artifacts.put('accounts/beta/datasets/private/data.jsonl', '{"x":"beta"}\n');
    const targets = [
      join(platform.dir, 'temper.db'),
      join(platform.dir, 'artifacts', 'accounts/beta/datasets/private/data.jsonl'),
      join(platform.dir, 'credentials.json'),
    ];
    await putEvaluator(platform, 'acme', 'snoop', {
      'snoop.mjs': `
        import { readFileSync } from 'node:fs';
        const targets = ${JSON.stringify(targets)};
        export default ({ completion }) => {
          const seen = targets.map((t) => { try { readFileSync(t); return 'READ'; } catch (e) { return e.code; } });
          return { score: Math.min(1, completion.length / 24), reason: seen.join(',') + '|' + Object.keys(process.env).sort().join(',') };
        };`,
    });
    const ref = await createRftJob('rft-snoop', 'snoop', 1);
    await platform.orchestrator.start(ref);
    await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    expect((await body(ref)).state).toBe('JOB_STATE_COMPLETED');
    const reasons = new Set((await rolloutsOf(ref)).map((r) => r.reason));
    expect([...reasons]).toEqual(['ENOENT,ENOENT,ENOENT|HOME,LANG,PATH,PWD,TMPDIR']);
  }, 300_000);

  it("an endless loop is killed per rollout at the job's rolloutTimeout; the worker keeps its timers", async () => {
    await putEvaluator(platform, 'acme', 'spinner', {
      'spin.mjs': 'export default () => { for (;;) {} };',
    });
    const ref = await createRftJob('rft-spinner', 'spinner', 2, { rolloutTimeout: 1 });
    let ticks = 0;
    const heartbeat = setInterval(() => ticks++, 100);
    await platform.orchestrator.start(ref);
    await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    clearInterval(heartbeat);
    const job = await body(ref);
    // Every rollout scored 0 (invalid): the epoch scored uniformly, so the job stops early.
    expect(job.state).toBe('JOB_STATE_EARLY_STOPPED');
    const rollouts = await rolloutsOf(ref);
    expect(rollouts).toHaveLength(12);
    for (const r of rollouts)
      expect(r).toMatchObject({
        score: 0,
        valid: false,
        reason: 'evaluator exceeded its wall-time limit of 1 s',
      });
    // Twelve seconds of spinning evaluators, and this process's event loop never stopped.
    expect(ticks).toBeGreaterThan(50);
  }, 300_000);

  it('an evaluator changed after upload fails the job, naming it, before a pod starts', async () => {
    const name = await putEvaluator(platform, 'acme', 'swapped', {
      'judge.mjs': 'export default () => 0.5;',
    });
    await platform.artifacts.put(`${name}/files/judge.mjs`, 'export default () => 1;');
    const ref = await createRftJob('rft-swapped', 'swapped', 1);
    await platform.orchestrator.start(ref);
    await expect(platform.client.workflow.getHandle(workflowIdOf(ref)).result()).rejects.toThrow();
    const job = await body(ref);
    expect(job.state).toBe('JOB_STATE_FAILED');
    expect((job.status as { message: string }).message).toMatch(
      /^evaluator accounts\/acme\/evaluators\/swapped: judge\.mjs does not match the sha256 recorded at upload/,
    );
    expect(await platform.launcher.list()).not.toContainEqual(
      expect.objectContaining({ jobId: expect.stringContaining('rft-swapped') }),
    );
  }, 120_000);
});

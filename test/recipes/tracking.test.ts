// Experiment tracking against the real MLflow tracking server (pinned PyPI `mlflow`): the
// REST tracker's params, per-step metrics, artifacts and status; a rerun on the same log
// directory continues the same run; an SFT recipe's run shows its loss per step; W&B settings
// are refused at submission with "W&B is unreachable" before any trainer starts.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRecipe } from '../../src/recipes/kit/index.js';
import { MlflowClient, openTracker, TrackingError } from '../../src/tracking/index.js';
import { type MlflowServer, pythonArtifacts, startMlflowServer } from './mlflow-server.js';

let dir: string;
let mlflow: MlflowServer;
const quiet = pino({ level: 'silent' });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-tracking-'));
  mlflow = await startMlflowServer(join(dir, 'mlflow'));
}, 300_000);

afterAll(async () => {
  await mlflow?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('MLflow tracker', () => {
  it('logs params, per-step metrics and artifacts; a rerun continues the run', async () => {
    const logDir = join(dir, 'unit');
    const settings = { mlflowTrackingUri: mlflow.url, mlflowExperimentName: 'unit' };
    const t = await openTracker(settings, { logDir, defaultRunName: 'first' });
    await t.logParams({ learning_rate: 0.001, 'adam.beta2': 0.95, note: undefined });
    await t.logMetrics(1, { 'loss:mean': 2.5, 'grad_norm:last': Number.NaN });
    await t.logMetrics(2, { 'loss:mean': 2.0 });
    await t.logArtifact('config.json', '{"a":1}\n');
    await t.finish('KILLED');
    const runId = JSON.parse(await readFile(join(logDir, 'tracking.json'), 'utf8')).mlflowRunId;
    expect(t.runRefs).toContain(`mlflow:${runId}`);

    // rerun on the same log directory: same MLflow run, running again, then finished
    const again = await openTracker(settings, { logDir });
    expect(again.runRefs).toContain(`mlflow:${runId}`);
    await again.logMetrics(3, { 'loss:mean': 1.5 });
    await again.finish('FINISHED');

    const client = new MlflowClient(mlflow.url);
    const { run } = await client.getRun(runId);
    expect(run.info.status).toBe('FINISHED');
    expect(run.data.params).toEqual(
      expect.arrayContaining([
        { key: 'learning_rate', value: '0.001' },
        { key: 'adam.beta2', value: '0.95' },
      ]),
    );
    const history = await client.metricHistory(runId, 'loss/mean');
    expect(history.map((m) => [m.step, m.value])).toEqual([
      [1, 2.5],
      [2, 2],
      [3, 1.5],
    ]);
    expect(await client.metricHistory(runId, 'grad_norm/last')).toEqual([]);
    expect((await client.listArtifacts(runId)).map((f) => f.path)).toContain('config.json');
    // the log directory keeps the same record
    const lines = (await readFile(join(logDir, 'metrics.jsonl'), 'utf8')).trim().split('\n');
    expect(lines.map((l) => JSON.parse(l).step)).toEqual([1, 2, 3]);
  });

  it('names the problem: a bad URI, an unreachable server', async () => {
    await expect(openTracker({ mlflowTrackingUri: 'ftp://x' })).rejects.toThrow(
      /mlflow tracking URI must be an http\(s\):\/\/ URL/,
    );
    const port = await closedPort();
    await expect(openTracker({ mlflowTrackingUri: `http://127.0.0.1:${port}` })).rejects.toThrow(
      /mlflow tracking server .* is unreachable/,
    );
  });
});

describe('recipes tracked', () => {
  it("an SFT recipe's MLflow run shows its loss at every step, its params and artifacts", async () => {
    const logPath = join(dir, 'sft');
    const result = (await runRecipe(
      'sft',
      {
        log_path: logPath,
        max_steps: 4,
        batch_size: 4,
        threads: 1,
        learning_rate: 1e-3,
        mlflow_tracking_uri: mlflow.url,
        mlflow_experiment_name: 'recipes',
        mlflow_run_name: 'sft-tracked',
        output_model_id: 'sft-tracked',
      },
      { log: quiet },
    )) as { losses: number[]; model: { name: string; sourceCheckpoint: string } };
    const runId = JSON.parse(await readFile(join(logPath, 'tracking.json'), 'utf8')).mlflowRunId;
    const client = new MlflowClient(mlflow.url);
    const { run } = await client.getRun(runId);
    expect(run.info.status).toBe('FINISHED');
    expect(run.data.tags).toEqual(
      expect.arrayContaining([{ key: 'mlflow.runName', value: 'sft-tracked' }]),
    );
    expect(run.data.params).toEqual(
      expect.arrayContaining([
        { key: 'recipe', value: 'sft' },
        { key: 'batch_size', value: '4' },
      ]),
    );
    const loss = await client.metricHistory(runId, 'loss/mean');
    expect(loss.map((m) => m.step)).toEqual([1, 2, 3, 4]);
    expect(loss.map((m) => m.value)).toEqual(result.losses);
    // Artifacts as the real Python client lists and reads them: config, result, the final
    // checkpoint's reference and the promoted model's record (the managed jobs' paths).
    const artifacts = await pythonArtifacts(mlflow.url, runId);
    expect(artifacts.top).toEqual(['checkpoints.json', 'config.json', 'model', 'result.json']);
    expect(artifacts.model).toEqual(['model/temper_model.json']);
    const record = artifacts.record as { name: string; files: { sha256: string }[] };
    expect(record.name).toBe(result.model.name);
    expect(record.files.length).toBeGreaterThan(0);
    const checkpoints = artifacts.checkpoints as {
      outputModel: string;
      lastCheckpoint: { checkpoint: string; step: number };
    };
    expect(checkpoints.outputModel).toBe(result.model.name);
    expect(checkpoints.lastCheckpoint).toEqual({
      checkpoint: expect.stringMatching(/:step-000004$/),
      step: 4,
    });
  }, 180_000);

  it('W&B settings are refused at submission: W&B is unreachable, nothing is started', async () => {
    const logPath = join(dir, 'wandb');
    const port = await closedPort();
    const error = await runRecipe(
      'sft',
      {
        log_path: logPath,
        wandb_project: 'my-experiments',
        wandb_entity: 'my-org',
        wandb_base_url: `http://127.0.0.1:${port}`,
      },
      { log: quiet },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TrackingError);
    expect((error as Error).message).toMatch(
      /^W&B is unreachable from temper at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
    );
    expect((error as Error).message).toMatch(/use --mlflow-tracking-uri/);
    expect(existsSync(join(logPath, 'trainers'))).toBe(false);
  });
});

// Managed jobs tracked in MLflow (issue 15): an SFT job on the bundled model, created through
// REST with `mlflowTrackingUri`, against the real MLflow tracking server (pinned PyPI
// `mlflow`): its run has the job's params, the loss of every step (each step once, equal to
// the job's own metric rows), its output model's record and checkpoints as artifacts (listed
// and read back by the real Python `mlflow` client), and ends FINISHED. An unreachable server is refused at create
// (400, no job); a run MLflow refuses while the job trains is a warning in the job's log and
// the job completes.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogDatasetPath } from '../../src/catalog/bundled.js';
import { MlflowClient, type MlflowRun } from '../../src/tracking/index.js';
import { type MlflowServer, pythonArtifacts, startMlflowServer } from '../recipes/mlflow-server.js';
import { type Json, type RestStack, startRestStack } from '../support/rest-stack.js';

let stack: RestStack;
let mlflow: MlflowServer;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-job-mlflow-'));
  [stack, mlflow] = await Promise.all([startRestStack(), startMlflowServer(join(dir, 'mlflow'))]);
  await stack.uploadDataset(
    'sure',
    readFileSync(catalogDatasetPath('accounts/temper/datasets/sure-answers-sft'), 'utf8'),
  );
}, 300_000);

afterAll(async () => {
  await stack?.close();
  await mlflow?.stop();
  await rm(dir, { recursive: true, force: true });
});

const COLLECTION = '/v1/accounts/acme/supervisedFineTuningJobs';

const sftBody = (extra: Json) => ({
  baseModel: 'accounts/temper/models/byte-lm-3m',
  dataset: 'accounts/acme/datasets/sure',
  batchSize: 1024,
  epochs: 1,
  learningRate: 5e-4,
  loraRank: 0,
  ...extra,
});

async function runsOf(client: MlflowClient, experiment: string): Promise<MlflowRun[]> {
  const id = await client.experimentId(experiment);
  const r = await client.call<{ runs?: MlflowRun[] }>('POST', '/api/2.0/mlflow/runs/search', {
    experiment_ids: [id],
  });
  return r.runs ?? [];
}

describe('managed jobs tracked in MLflow', () => {
  it("an SFT job's run has its params, every step's loss once, and ends FINISHED", async () => {
    const created = await stack.call('POST', `${COLLECTION}?supervisedFineTuningJobId=sft-ml`, {
      ...sftBody({ mlflowTrackingUri: mlflow.url, mlflowExperimentName: 'jobs' }),
    });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const job = await stack.waitForJob(`${COLLECTION}/sft-ml`);
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    const stored = (await stack.call('GET', `${COLLECTION}/sft-ml/metrics`)).json.metrics as {
      step: number;
      values: Json;
    }[];
    expect(stored.length).toBeGreaterThan(1);

    const client = new MlflowClient(mlflow.url);
    const runs = await runsOf(client, 'jobs');
    expect(runs).toHaveLength(1);
    const { run } = await client.getRun(runs[0]!.info.run_id);
    expect(run.info.status).toBe('FINISHED');
    expect(run.data.tags).toEqual(
      expect.arrayContaining([
        { key: 'mlflow.runName', value: 'sft-ml' },
        { key: 'temper.job', value: 'accounts/acme/supervisedFineTuningJobs/sft-ml' },
      ]),
    );
    expect(run.data.params).toEqual(
      expect.arrayContaining([
        { key: 'method', value: 'supervisedFineTuningJobs' },
        { key: 'baseModel', value: 'accounts/temper/models/byte-lm-3m' },
        { key: 'learningRate', value: '0.0005' },
        { key: 'batchSize', value: '1024' },
      ]),
    );
    const loss = await client.metricHistory(run.info.run_id, 'loss/mean');
    expect(loss.map((m) => [m.step, m.value])).toEqual(
      stored.map((m) => [m.step, m.values['loss:mean']]),
    );

    // Artifacts: the output model's record (source checkpoint, files with sha256) and the
    // job's checkpoints, as the Python client sees them.
    const artifacts = await pythonArtifacts(mlflow.url, run.info.run_id);
    expect(artifacts.top).toEqual(['checkpoints.json', 'model']);
    expect(artifacts.model).toEqual(['model/temper_model.json']);
    const model = (await stack.call('GET', `/v1/${String(job.outputModel)}`)).json;
    const record = artifacts.record as Json;
    expect(record.name).toBe(job.outputModel);
    expect(record.sourceCheckpoint).toMatch(/\/checkpoints\/final(-[0-9a-f]+)?$/);
    const files = record.files as { path: string; size: number; sha256: string }[];
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(f.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(model.name).toBe(record.name);
    const checkpoints = artifacts.checkpoints as Json;
    expect(checkpoints.outputModel).toBe(job.outputModel);
    expect(checkpoints.lastCheckpoint).toEqual(job.lastCheckpoint);
  }, 240_000);

  it('an unreachable server is a 400 at create and leaves no job', async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const port = (s.address() as { port: number }).port;
    await new Promise((r) => s.close(r));
    const created = await stack.call('POST', `${COLLECTION}?supervisedFineTuningJobId=sft-nope`, {
      ...sftBody({ mlflowTrackingUri: `http://127.0.0.1:${port}` }),
    });
    expect(created.status).toBe(400);
    expect(JSON.stringify(created.json)).toMatch(/mlflowTrackingUri: .*unreachable/);
    expect((await stack.call('GET', `${COLLECTION}/sft-nope`)).status).toBe(404);
    const orphan = await stack.call('POST', COLLECTION, sftBody({ mlflowRunName: 'x' }));
    expect(orphan.status).toBe(400);
    expect(JSON.stringify(orphan.json)).toMatch(/need mlflowTrackingUri/);
  });

  it('a run MLflow refuses while the job trains is a warning in its log; the job completes', async () => {
    // A deleted experiment passes the check at create (MLflow still finds it by name) but
    // refuses new runs: the failure comes while the job runs.
    const client = new MlflowClient(mlflow.url);
    const id = await client.experimentId('deleted');
    await client.call('POST', '/api/2.0/mlflow/experiments/delete', { experiment_id: id });
    const created = await stack.call('POST', `${COLLECTION}?supervisedFineTuningJobId=sft-warn`, {
      ...sftBody({ mlflowTrackingUri: mlflow.url, mlflowExperimentName: 'deleted' }),
    });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const job = await stack.waitForJob(`${COLLECTION}/sft-warn`);
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    const log = (await stack.call('GET', `${COLLECTION}/sft-warn/logs`)).json as {
      logs: { id: string; level: string; text: string }[];
    };
    const warning = log.logs.find((l) => l.id === 'tracking-warning');
    expect(warning?.level).toBe('WARNING');
    expect(warning?.text).toMatch(/^MLflow tracking: /);
  }, 240_000);
});

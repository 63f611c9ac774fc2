// The real MLflow tracking server (the pinned `mlflow` venv, scripts/python-envs/mlflow.txt)
// on a free loopback port, with a SQLite store and artifact serving in a temporary folder.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { pythonEnv } from '../support/python-env.js';

export interface MlflowServer {
  url: string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startMlflowServer(dir: string, timeoutMs = 240_000): Promise<MlflowServer> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    pythonEnv('mlflow').bin('mlflow'),
    [
      'server',
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--backend-store-uri',
      `sqlite:///${join(dir, 'mlflow.db')}`,
      '--artifacts-destination',
      join(dir, 'artifacts'),
      '--workers',
      '1',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MLFLOW_TRACKING_URI: '' } },
  );
  let log = '';
  child.stderr?.on('data', (b: Buffer) => {
    log = (log + b.toString()).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mlflow server exited:\n${log}`);
    const ok = await fetch(`${url}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`mlflow server not up after ${timeoutMs} ms:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return {
    url,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * A run's artifacts as the real Python client (`mlflow` of the pinned venv) lists and reads
 * them: the top level, `model/`, and the JSON of RUN_ARTIFACTS' two files.
 */
const LIST_ARTIFACTS = `
import json, sys
import mlflow.artifacts
from mlflow.tracking import MlflowClient
uri, run = sys.argv[1], sys.argv[2]
client = MlflowClient(tracking_uri=uri)
print(json.dumps({
    "top": sorted(a.path for a in client.list_artifacts(run)),
    "model": sorted(a.path for a in client.list_artifacts(run, "model")),
    "record": mlflow.artifacts.load_dict(f"runs:/{run}/model/temper_model.json"),
    "checkpoints": mlflow.artifacts.load_dict(f"runs:/{run}/checkpoints.json"),
}))
`;

export function pythonArtifacts(uri: string, runId: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(
      pythonEnv('mlflow').python,
      ['-c', LIST_ARTIFACTS, uri, runId],
      { env: { ...process.env, MLFLOW_TRACKING_URI: uri }, timeout: 120_000 },
      (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout)),
    );
  });
}

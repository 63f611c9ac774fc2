// Worker hosts as `temper worker` processes on separate network hosts (Linux network
// namespaces: each has its own loopback, so a pod on one host is unreachable from the other).
// A job's pod activities must reach the host that runs its pod; a job whose host dies
// mid-training (kill -9 of the worker) moves to the other host and ends with the same weights;
// that host's /metrics (`temper worker --metrics-port`) counts the activities it ran.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRef } from '../../src/control-plane/orchestrator.js';
import { TemporalOrchestrator } from '../../src/workflows/orchestrator.js';
import { workflowIdOf } from '../../src/workflows/types.js';
import { createTestHost, type TestHost } from '../support/netns.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { sample } from '../support/prometheus-text.js';

let platform: TestPlatform;
let orchestrator: TemporalOrchestrator;
const children: ChildProcess[] = [];
const hosts: TestHost[] = [];

beforeAll(async () => {
  platform = await startTestPlatform({ workers: 0, temporalIp: '0.0.0.0' });
  hosts.push(createTestHost(0), createTestHost(1));
  orchestrator = new TemporalOrchestrator(platform.client, platform.sharedQueue, {
    hostHeartbeatTimeoutMs: 5_000,
    hostStartTimeoutMs: 5_000,
  });
}, 120_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await platform?.close();
  for (const h of hosts) h.destroy();
});

/** A `temper worker` process on `host`; resolves with its started line once it polls. */
async function startWorkerProcess(
  hostId: string,
  host: TestHost,
  extraArgs: string[] = [],
): Promise<{ child: ChildProcess; started: Record<string, unknown> }> {
  const port = platform.server.address.split(':').pop();
  const [command, ...prefix] = host.exec;
  const child = spawn(
    command!,
    [
      ...prefix,
      process.execPath,
      '--import',
      'tsx',
      'src/cli/main.ts',
      'worker',
      '--host-id',
      hostId,
      '--threads',
      '1',
      ...extraArgs,
    ],
    {
      env: {
        ...process.env,
        TEMPER_HOME: platform.dir,
        TEMPER_TEMPORAL_ADDRESS: `${host.gatewayIp}:${port}`,
        TEMPER_TASK_QUEUE: platform.sharedQueue,
      },
      // The workers' own warnings (the pods this test kills) stay out of the test output;
      // they are shown if a worker fails to start.
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-8192);
  });
  const lines = createInterface({ input: child.stdout! });
  const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.once('exit', (code) =>
      reject(new Error(`worker ${hostId} exited with ${code}: ${stderr}`)),
    );
    lines.on('line', (line) => {
      if (line.includes('worker_started')) resolve(JSON.parse(line) as Record<string, unknown>);
    });
  });
  return { child, started };
}

async function createJob(id: string): Promise<JobRef> {
  const ref: JobRef = { collection: 'supervisedFineTuningJobs', account: 'acme', id };
  await platform.store.create(ref.collection, ref.account, ref.id, {
    state: 'JOB_STATE_PENDING',
    baseModel: 'accounts/temper/models/byte-lm-3m',
    dataset: 'accounts/temper/datasets/sure-answers-sft',
    outputModel: `accounts/acme/models/${id}`,
    batchSize: 1024,
    learningRate: 5e-4,
    loraRank: 4,
    checkpointFrequency: 2,
    seed: 11,
  });
  return ref;
}

const job = (ref: JobRef) => platform.jobBody(ref);
const weights = (id: string) => platform.modelWeights('acme', id);

describe('worker hosts', () => {
  it('moves a job to another host when its worker is killed, with identical final weights', async () => {
    const { child: first } = await startWorkerProcess('alpha', hosts[0]!);
    const reference = await createJob('lora-reference');
    await orchestrator.start(reference);
    await platform.client.workflow.getHandle(workflowIdOf(reference)).result();

    const ref = await createJob('lora-moved');
    await orchestrator.start(ref);
    while (!(await job(ref)).lastCheckpoint) await new Promise((r) => setTimeout(r, 50));
    first.kill('SIGKILL');
    // The second host serves its metrics (on its own network, where the test reaches it).
    const { started } = await startWorkerProcess('beta', hosts[1]!, [
      '--metrics-port',
      '0',
      '--metrics-host',
      '0.0.0.0',
    ]);
    const result = await platform.client.workflow.getHandle(workflowIdOf(ref)).result();
    expect(result.trainerRestarts).toBeGreaterThanOrEqual(1);
    const body = await job(ref);
    expect(body.state).toBe('JOB_STATE_COMPLETED');
    expect(body.trainerHost).toBe('temper-host-beta');
    expect((await weights('lora-moved')).equals(await weights('lora-reference'))).toBe(true);

    // The host that finished the job counts the activities it ran, by type and outcome.
    const metricsPort = String(started.metricsAddress).split(':').pop();
    const res = await fetch(`http://${hosts[1]!.ip}:${metricsPort}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const finished = (activity: string, outcome: string) =>
      sample(text, 'temper_worker_activities_total', { activity, outcome });
    expect(finished('launchTrainer', 'completed')).toBe(1);
    expect(finished('trainSegment', 'completed')).toBeGreaterThanOrEqual(1);
    expect(finished('exportFinalWeights', 'completed')).toBe(1);
    expect(sample(text, 'temper_worker_activities_running', { activity: 'trainSegment' })).toBe(0);
    expect(text).toMatch(
      /^temper_worker_activity_duration_seconds_count\{activity="trainSegment"/m,
    );
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(text).not.toContain('lora-moved');
  }, 300_000);
});

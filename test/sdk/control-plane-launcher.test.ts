// The Training API through the platform: ServiceClient.fromConfig({baseUrl, apiKey}) gets its
// trainer as an rlorTrainerJob (REST → Temporal workflow → worker host → pod), trains on it,
// lists its checkpoints through REST, and deleting on close stops the pod.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bootstrapAccount,
  type ControlPlane,
  createControlPlane,
} from '../../src/control-plane/index.js';
import { ServiceClient } from '../../src/sdk/index.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';

let platform: TestPlatform;
let controlPlane: ControlPlane;
let baseUrl: string;
let apiKey: string;

beforeAll(async () => {
  platform = await startTestPlatform();
  controlPlane = createControlPlane({
    store: platform.store,
    orchestrator: platform.orchestrator,
    artifacts: platform.artifacts,
    checkpointUrl: platform.checkpoints.url,
  });
  baseUrl = await controlPlane.listen(0, '127.0.0.1');
  apiKey = (await bootstrapAccount(platform.store, 'acme')).apiKey;
}, 120_000);

afterAll(async () => {
  await controlPlane?.close();
  await platform?.close();
});

const tokens = Array.from(Buffer.from('Q: capital of Peru? A: Lima'));
const datum = {
  modelInput: tokens.slice(0, -1),
  lossFnInputs: { target_tokens: tokens.slice(1), weights: tokens.slice(1).map(() => 1) },
};

describe('ServiceClient with a control plane (baseUrl + apiKey)', () => {
  it('trains on an rlorTrainerJob and stops it on close', async () => {
    const service = ServiceClient.fromConfig({
      baseUrl,
      apiKey,
      account: 'acme',
      baseModel: 'accounts/temper/models/byte-lm-3m',
      learningRate: 1e-3,
      cleanupTrainerOnClose: true,
    });
    const training = await service.createTrainingClient();
    const jobId = service.trainerJobId!;
    const job = (await (
      await fetch(`${baseUrl}/v1/accounts/acme/rlorTrainerJobs/${jobId}`, {
        headers: { authorization: `Bearer ${apiKey}` },
      })
    ).json()) as Record<string, unknown>;
    expect(job.state).toBe('JOB_STATE_RUNNING');
    const before = await training.forward([datum], 'cross_entropy');
    for (let i = 0; i < 3; i++) {
      await training.forwardBackward([datum], 'cross_entropy');
      await training.optimStep({});
    }
    const after = await training.forward([datum], 'cross_entropy');
    expect(after.metrics['loss:sum']!).toBeLessThan(before.metrics['loss:sum']!);
    const saved = await training.saveState('three-steps');
    const listed = (await (
      await fetch(`${baseUrl}/v1/accounts/acme/rlorTrainerJobs/${jobId}/checkpoints`, {
        headers: { authorization: `Bearer ${apiKey}` },
      })
    ).json()) as { checkpoints: { name: string }[] };
    expect(listed.checkpoints.map((c) => c.name)).toContain(saved.path);
    await service.close();
    const gone = await fetch(`${baseUrl}/v1/accounts/acme/rlorTrainerJobs/${jobId}`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(gone.status).toBe(404);
    for (let i = 0; i < 100; i++) {
      const pod = await platform.launcher.get(jobId);
      if (pod?.state !== 'running') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await platform.launcher.get(jobId))?.state).not.toBe('running');
  }, 120_000);

  it('refuses a wrong key before launching anything', async () => {
    const service = ServiceClient.fromConfig({
      baseUrl,
      apiKey: 'tmp_wrong',
      account: 'acme',
      baseModel: 'accounts/temper/models/byte-lm-3m',
    });
    await expect(service.createTrainingClient()).rejects.toThrow(/control plane/);
  });
});

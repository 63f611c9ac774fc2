// Trainer pod lifecycle as processes: the local launcher, the inactivity timeout (heartbeats
// count as activity, health checks do not), SIGTERM with an operation in flight, startup failure.
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLED_MODEL } from '../../src/catalog/bundled.js';
import { ServingStatus } from '../../src/gen/temper/trainer/v1/trainer_pb.js';
import { createTrainerClient } from '../../src/trainer/client.js';
import { ERROR_CODE_METADATA_KEY } from '../../src/trainer/errors.js';
import type { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import {
  expectTrainerError,
  randomTokens,
  rng,
  tempDir,
  testLauncher,
  waitFor,
  wireDatum,
  writeTinyModelDir,
} from './helpers.js';

describe('trainer pod lifecycle', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;
  let modelDir = '';
  const launched: string[] = [];

  beforeAll(async () => {
    tmp = await tempDir('lifecycle');
    modelDir = await writeTinyModelDir(`${tmp.dir}/model`);
    launcher = testLauncher(`${tmp.dir}/jobs`);
  });

  afterAll(async () => {
    await Promise.all(launched.map((id) => launcher.stop(id, { graceMs: 2_000 })));
    await tmp?.cleanup();
  });

  it('stops an idle pod after the inactivity timeout; heartbeats keep a pod alive', async () => {
    const [idle, beating] = await Promise.all([
      launcher.launch({
        baseModel: modelDir,
        threads: 1,
        inactivityTimeoutMs: 1_200,
        logLevel: 'info',
      }),
      launcher.launch({ baseModel: modelDir, threads: 1, inactivityTimeoutMs: 1_200 }),
    ]);
    launched.push(idle.jobId, beating.jobId);
    const idleClient = createTrainerClient(idle.address, idle.token);
    const client = createTrainerClient(beating.address, beating.token);
    try {
      const { sessionId } = await client.createSession({});
      const started = Date.now();
      const beat = setInterval(() => void client.heartbeat({ sessionId }).catch(() => {}), 250);
      // Health polling is not activity: the idle pod still times out.
      const poll = setInterval(() => void idleClient.health({}).catch(() => {}), 100);
      try {
        await waitFor(
          async () => (await launcher.get(idle.jobId))?.state === 'stopped',
          8_000,
          'idle pod to stop',
        );
      } finally {
        clearInterval(poll);
      }
      const info = await launcher.get(idle.jobId);
      expect(info?.reason).toBe('inactivity');
      expect(Date.now() - started).toBeGreaterThan(700);
      expect((await launcher.get(beating.jobId))?.state).toBe('running');
      clearInterval(beat);
      await waitFor(
        async () => (await launcher.get(beating.jobId))?.state === 'stopped',
        8_000,
        'pod to stop after heartbeats end',
      );
      expect((await launcher.get(beating.jobId))?.reason).toBe('inactivity');
      const log = await readFile(info!.logPath!, 'utf8');
      expect(log).toContain('"reason":"inactivity"');
      await expectTrainerError(launcher.attach(idle.jobId), 'unknown_trainer');
    } finally {
      idleClient.close();
      client.close();
    }
  });

  it('SIGTERM: the operation in flight completes, waiting ones fail, the pod exits cleanly', async () => {
    // The bundled 3M model, so that the heavy operation takes a while.
    const endpoint = await launcher.launch({
      baseModel: BUNDLED_MODEL.name,
      threads: 1,
      inactivityTimeoutMs: 0,
    });
    launched.push(endpoint.jobId);
    const client = createTrainerClient(endpoint.address, endpoint.token);
    try {
      const { sessionId } = await client.createSession({});
      const { modelId } = await client.createModel({ sessionId, modelSeqId: 1 });
      const r = rng(5);
      const data = Array.from({ length: 12 }, () => {
        const tokens = randomTokens(r, 128, 256);
        return wireDatum(tokens, [...tokens.slice(1), 0], { weights: tokens.map(() => 1) });
      });
      // seq 1 is heavy; seq 3 waits for a seq 2 that never comes.
      let heavyAt = 0;
      const heavy = client.forwardBackward({ modelId, seqId: 1, data, lossFn: 'cross_entropy' });
      void heavy.then(
        () => {
          heavyAt = Date.now();
        },
        () => {
          heavyAt = Date.now();
        },
      );
      const waiting = client.forward({ modelId, seqId: 3, data: data.slice(0, 1) });
      await new Promise((r) => setTimeout(r, 100));
      // The engine works on its own thread: the pod answers while the step runs.
      const health = await client.health({});
      const healthAt = Date.now();
      expect(health.status).toBe(ServingStatus.SERVING);
      const stopping = launcher.stop(endpoint.jobId, { graceMs: 15_000 });
      const [h, w] = await Promise.allSettled([heavy, waiting]);
      await stopping;
      if (h.status === 'rejected') {
        // SIGTERM arrived before the request did: then it was refused, not lost.
        const e = h.reason as grpc.ServiceError;
        expect([grpc.status.UNAVAILABLE]).toContain(e.code);
      } else {
        expect(h.value.output?.metrics['loss:sum']).toBeGreaterThan(0);
        expect(healthAt).toBeLessThan(heavyAt);
      }
      expect(w.status).toBe('rejected');
      const e = (w as PromiseRejectedResult).reason as grpc.ServiceError;
      expect(e.code).toBe(grpc.status.UNAVAILABLE);
      if (e.metadata.get(ERROR_CODE_METADATA_KEY).length > 0) {
        expect(e.metadata.get(ERROR_CODE_METADATA_KEY)[0]).toBe('shutting_down');
      }
      const info = await launcher.get(endpoint.jobId);
      expect(info?.state).toBe('stopped');
      expect(info?.reason).toBe('SIGTERM');
    } finally {
      client.close();
    }
  });

  it('reports a pod that cannot start, with its log', async () => {
    const error = await expectTrainerError(
      launcher.launch({ baseModel: `${tmp.dir}/no-such-model`, threads: 1 }),
      'launch_failed',
    );
    expect(error.message).toContain('no-such-model');
    expect(error.message).toContain('exited during startup');
  });

  it('attaches to a running pod from another launcher (another process) by job id', async () => {
    const endpoint = await launcher.launch({
      baseModel: modelDir,
      threads: 1,
      inactivityTimeoutMs: 0,
    });
    launched.push(endpoint.jobId);
    const other = testLauncher(launcher.stateDir);
    expect(await other.attach(endpoint.jobId)).toEqual(endpoint);
    expect((await other.list()).map((j) => j.jobId)).toContain(endpoint.jobId);
    await other.stop(endpoint.jobId);
    expect((await launcher.get(endpoint.jobId))?.state).toBe('stopped');
    await expectTrainerError(other.attach('trainer-missing'), 'unknown_trainer');
  });
});

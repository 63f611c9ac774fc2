// A worker host's activity metrics: the interceptor counts each activity once, by type and
// outcome (completed, failed, or cancelled when its cancellation signal fired), times it,
// and shows those running meanwhile; the exposition is served at GET /metrics.
import type { Context } from '@temporalio/activity';
import { afterAll, describe, expect, it } from 'vitest';
import { type MetricsServer, serveMetrics } from '../../src/metrics/index.js';
import { WorkerMetrics } from '../../src/workflows/index.js';
import { sample } from '../support/prometheus-text.js';

/** The part of Temporal's activity context the interceptor reads. */
function context(activityType: string, cancel = new AbortController()): Context {
  return { info: { activityType }, cancellationSignal: cancel.signal } as unknown as Context;
}

async function series(
  metrics: WorkerMetrics,
  name: string,
  labels: Record<string, string>,
): Promise<number | undefined> {
  return sample((await metrics.server.render()).body, name, labels);
}

const TOTAL = 'temper_worker_activities_total';
const total = (activity: string, outcome: string) => [TOTAL, { activity, outcome }] as const;

describe('worker activity metrics', () => {
  let server: MetricsServer | undefined;
  afterAll(async () => {
    await server?.close();
  });

  it('counts each activity by type and outcome, and those running', async () => {
    const metrics = new WorkerMetrics();
    const run = (ctx: Context, body: () => Promise<unknown>) =>
      metrics.interceptor()(ctx).inbound!.execute!({ args: [], headers: {} }, body);

    let release!: () => void;
    const slow = run(context('trainSegment'), () => new Promise<void>((r) => (release = r)));
    expect(
      await series(metrics, 'temper_worker_activities_running', { activity: 'trainSegment' }),
    ).toBe(1);
    release();
    await slow;
    expect(
      await series(metrics, 'temper_worker_activities_running', { activity: 'trainSegment' }),
    ).toBe(0);

    await expect(run(context('launchTrainer'), async () => 'endpoint')).resolves.toBe('endpoint');
    await expect(
      run(context('launchTrainer'), async () => {
        throw new Error('no free port');
      }),
    ).rejects.toThrow('no free port');
    const cancel = new AbortController();
    cancel.abort();
    await expect(
      run(context('trainSegment', cancel), async () => {
        throw new Error('cancelled');
      }),
    ).rejects.toThrow('cancelled');

    expect(await series(metrics, ...total('trainSegment', 'completed'))).toBe(1);
    expect(await series(metrics, ...total('trainSegment', 'cancelled'))).toBe(1);
    expect(await series(metrics, ...total('launchTrainer', 'completed'))).toBe(1);
    expect(await series(metrics, ...total('launchTrainer', 'failed'))).toBe(1);
    expect(
      await series(metrics, 'temper_worker_activity_duration_seconds_count', {
        activity: 'trainSegment',
        outcome: 'completed',
      }),
    ).toBe(1);

    // Served as Prometheus text, with the process's own metrics.
    server = await serveMetrics(metrics.server, { host: '127.0.0.1', port: 0 });
    const res = await fetch(`http://${server.address}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
    const text = await res.text();
    expect(sample(text, ...total('launchTrainer', 'failed'))).toBeDefined();
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    expect((await fetch(`http://${server.address}/other`)).status).toBe(404);
  });
});

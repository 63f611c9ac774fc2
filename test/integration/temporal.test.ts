import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import {
  bundleWorkflowCode,
  DefaultLogger,
  NativeConnection,
  Runtime,
  Worker,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevServer, type TemporalDevServer } from '../../src/orchestration/dev-server.js';
import {
  resolveTemporalBinary,
  TemporalBinaryNotFoundError,
} from '../../src/orchestration/temporal-binary.js';
import { type HelloActivities, hello } from './workflows/hello.js';

// Keep the SDK's worker logs out of the test output unless something goes wrong.
Runtime.install({ logger: new DefaultLogger('WARN') });

describe('Temporal dev server, worker and client', () => {
  let server: TemporalDevServer | undefined;
  let bundle: WorkflowBundleWithSourceMap;

  beforeAll(async () => {
    // Start the server and bundle the workflow code at the same time.
    [server, bundle] = await Promise.all([
      startDevServer(),
      bundleWorkflowCode({
        workflowsPath: fileURLToPath(new URL('./workflows/hello.ts', import.meta.url)),
        logger: new DefaultLogger('WARN'),
      }),
    ]);
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('runs a workflow that calls an activity to completion', async () => {
    if (!server) throw new Error('dev server did not start');
    const taskQueue = `hello-${randomUUID()}`;
    const calls: string[] = [];
    const activities: HelloActivities = {
      async greet(name) {
        calls.push(name);
        return `Hello, ${name}`;
      },
    };

    const workerConnection = await NativeConnection.connect({ address: server.address });
    const connection = await Connection.connect({ address: server.address });
    try {
      const worker = await Worker.create({
        connection: workerConnection,
        namespace: server.namespace,
        taskQueue,
        workflowBundle: bundle,
        activities,
      });
      const client = new Client({ connection, namespace: server.namespace });
      const workflowId = `hello-${randomUUID()}`;

      const result = await worker.runUntil(
        client.workflow.execute(hello, { taskQueue, workflowId, args: ['temper'] }),
      );

      expect(result).toBe('Hello, temper!');
      expect(calls).toEqual(['temper']);
      const description = await client.workflow.getHandle(workflowId).describe();
      expect(description.status.name).toBe('COMPLETED');
      expect(worker.getState()).toBe('STOPPED');
    } finally {
      await connection.close();
      await workerConnection.close();
    }
  });

  it('says how to install the CLI when the binary is missing', () => {
    const env = { TEMPER_TEMPORAL_BIN: '/nonexistent/temporal' };
    expect(() => resolveTemporalBinary(env)).toThrow(TemporalBinaryNotFoundError);
    expect(() => resolveTemporalBinary(env)).toThrow(/scripts\/install-temporal\.sh/);
    const dir = { TEMPER_TEMPORAL_BIN_DIR: '/nonexistent/bin' };
    expect(() => resolveTemporalBinary(dir)).toThrow(/\/nonexistent\/bin\/temporal/);
  });
});

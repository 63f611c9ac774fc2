// Trainer pods answer only their token: real pods (`temper trainer serve` subprocesses from the
// local launcher) over real gRPC on loopback. No token, a wrong one or another pod's token is
// UNAUTHENTICATED on every service the pod serves; the launcher's token works; a pod refuses
// to start without one; the token never appears on the pod's command line.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServingStatus, TrainerService } from '../../src/gen/temper/trainer/v1/trainer_pb.js';
import { HealthService } from '../../src/gen/temper/v1/health_pb.js';
import { createClient } from '../../src/rpc/grpc-service.js';
import { newTrainerToken, TRAINER_TOKEN_ENV } from '../../src/trainer/auth.js';
import { createTrainerClient } from '../../src/trainer/client.js';
import {
  defaultTemperCommand,
  type LocalProcessLauncher,
  type TrainerEndpoint,
} from '../../src/trainer/launcher/index.js';
import { tempDir, testLauncher, writeTinyModelDir } from '../trainer/helpers.js';

async function refusal(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  const error = await promise.then(
    () => {
      throw new Error('expected UNAUTHENTICATED, the call succeeded');
    },
    (e: unknown) => e as grpc.ServiceError,
  );
  expect(grpc.status[error.code], error.details).toBe('UNAUTHENTICATED');
  return error;
}

describe('trainer pod gRPC authentication', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;
  let modelDir = '';
  let a: TrainerEndpoint;
  let b: TrainerEndpoint;

  beforeAll(async () => {
    tmp = await tempDir('trainer-auth');
    modelDir = await writeTinyModelDir(`${tmp.dir}/model`);
    launcher = testLauncher(`${tmp.dir}/jobs`);
    [a, b] = await Promise.all([
      launcher.launch({ baseModel: modelDir, threads: 1, inactivityTimeoutMs: 0 }),
      launcher.launch({ baseModel: modelDir, threads: 1, inactivityTimeoutMs: 0 }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([a, b].filter(Boolean).map((e) => launcher.stop(e.jobId)));
    await tmp?.cleanup();
  });

  it('each pod gets its own strong token from the launcher', () => {
    expect(a.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(b.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.token).not.toBe(b.token);
  });

  it('a call without a token is refused, on TrainerService and the health service alike', async () => {
    const bare = createClient(TrainerService, a.address);
    const health = createClient(HealthService, a.address);
    try {
      const error = await refusal(bare.health({}));
      expect(error.details).toBe(
        '/temper.trainer.v1.TrainerService/Health: this trainer pod requires its token ("authorization: Bearer <token>" metadata); none was sent',
      );
      await refusal(bare.createSession({}));
      await refusal(health.check({}));
    } finally {
      bare.close();
      health.close();
    }
  });

  it("a wrong token, another pod's token or a malformed header is refused", async () => {
    const wrong = createTrainerClient(a.address, newTrainerToken());
    const other = createTrainerClient(a.address, b.token);
    const raw = createClient(TrainerService, a.address);
    try {
      const error = await refusal(wrong.createSession({}));
      expect(error.details).toBe(
        '/temper.trainer.v1.TrainerService/CreateSession: the trainer token is wrong (present this pod\'s token as "authorization: Bearer <token>")',
      );
      await refusal(other.health({}));
      // The bare token without the Bearer scheme is not a credential.
      const bareToken = new grpc.Metadata();
      bareToken.set('authorization', a.token);
      await refusal(raw.health({}, { metadata: bareToken }));
    } finally {
      wrong.close();
      other.close();
      raw.close();
    }
  });

  it("the pod's own token works, and attach hands it out again", async () => {
    const attached = await launcher.attach(a.jobId);
    expect(attached).toEqual(a);
    const client = createTrainerClient(attached.address, attached.token);
    try {
      expect((await client.health({})).status).toBe(ServingStatus.SERVING);
      const { sessionId } = await client.createSession({});
      expect(sessionId).not.toBe('');
      const { modelId } = await client.createModel({ sessionId, modelSeqId: 1 });
      expect((await client.getInfo({ modelId })).info?.modelId).toBe(modelId);
    } finally {
      client.close();
    }
  });

  it("the token is in the pod's environment, not on its command line", async () => {
    const info = await launcher.get(a.jobId);
    const cmdline = await readFile(`/proc/${info!.pid}/cmdline`, 'utf8');
    expect(cmdline).toContain('trainer\0serve');
    expect(cmdline).not.toContain(a.token);
  });

  it('a pod refuses to start without a token, or with a short one', async () => {
    const [node, ...prefix] = defaultTemperCommand();
    const run = (token: string | undefined) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const env: NodeJS.ProcessEnv = { ...process.env, TEMPER_LOG_LEVEL: 'warn' };
        delete env[TRAINER_TOKEN_ENV];
        if (token !== undefined) env[TRAINER_TOKEN_ENV] = token;
        const child = spawn(
          node!,
          [...prefix, 'trainer', 'serve', '--base-model', modelDir, '--port', '0'],
          { env, stdio: ['ignore', 'ignore', 'pipe'] },
        );
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
        });
        child.on('exit', (code) => resolve({ code, stderr }));
      });
    const [none, short] = await Promise.all([run(undefined), run('abc')]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain(`a trainer pod needs a token: set ${TRAINER_TOKEN_ENV}`);
    expect(short.code).not.toBe(0);
    expect(short.stderr).toContain(`${TRAINER_TOKEN_ENV} must be at least 32 printable ASCII`);
  });
});

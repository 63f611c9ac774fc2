/**
 * The gRPC face of a trainer pod: TrainerService (every RPC mapped to one TrainerPod method,
 * ordered operations through the model's queue) plus the generic temper.v1.HealthService.
 * Errors leave as the status of their TrainerError with the stable code in the trailing
 * metadata (`temper-error-code`); loss errors keep their loss code; anything unexpected is
 * INTERNAL and logged. A call without the pod's token is UNAUTHENTICATED (auth.ts).
 */
import {
  create,
  type DescMethod,
  type MessageInitShape,
  type MessageShape,
} from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CheckpointError } from '../checkpoints/dcp/errors.js';
import { EngineError } from '../engine/model.js';
import { TrainerService } from '../gen/temper/trainer/v1/trainer_pb.js';
import { HealthCheckResponse_ServingStatus, HealthService } from '../gen/temper/v1/health_pb.js';
import { LossError } from '../losses/index.js';
import { addService, serviceDefinition } from '../rpc/grpc-service.js';
import { trainerAuthInterceptor } from './auth.js';
import { TRAINER_CHANNEL_OPTIONS } from './client.js';
import { checkpointErrorToTrainer, TrainerError, toGrpcError } from './errors.js';
import type { TrainerMetrics } from './metrics.js';
import type { ModelRuntime } from './model-runtime.js';
import { TRAINER_VERSION, type TrainerPod } from './pod.js';

type Methods = typeof TrainerService.method;
type Impl = {
  [K in keyof Methods]: (
    request: MessageShape<Methods[K]['input']>,
  ) => MessageInitShape<Methods[K]['output']> | Promise<MessageInitShape<Methods[K]['output']>>;
};

/** The typed error a thrown value stands for. */
export function asTrainerError(error: unknown): TrainerError {
  if (error instanceof TrainerError) return error;
  if (error instanceof LossError) {
    return new TrainerError(error.code, error.message, {
      datum: error.datum,
      field: error.field,
      cause: error,
    });
  }
  if (error instanceof CheckpointError) return checkpointErrorToTrainer(error);
  if (error instanceof EngineError) {
    return new TrainerError('internal', `engine: ${error.message}`, { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new TrainerError('internal', message, { cause: error });
}

export function trainerImplementation(pod: TrainerPod): Impl {
  const op = <T>(
    req: { modelId: string; seqId: number },
    kind: string,
    fn: (runtime: ModelRuntime) => T | Promise<T>,
  ) => pod.op(req.modelId, req.seqId, kind, fn);
  return {
    health: () => pod.health(),
    createSession: (req) => ({ sessionId: pod.createSession(req) }),
    heartbeat: (req) => {
      pod.heartbeat(req.sessionId);
      return { inactivityTimeoutMs: BigInt(pod.inactivityTimeoutMs) };
    },
    createModel: (req) => pod.createModel(req),
    getInfo: (req) => ({ info: pod.info(req.modelId) }),
    unloadModel: async (req) => {
      await pod.unloadModel(req.modelId);
      return { modelId: req.modelId };
    },
    forward: async (req) => ({ output: await op(req, 'forward', (m) => m.forward(req)) }),
    forwardBackward: async (req) => ({
      output: await op(req, 'forward_backward', (m) => m.forwardBackward(req)),
    }),
    forwardBackwardCustom: async (req) => ({
      output: await op(req, 'forward_backward_custom', (m) =>
        m.forwardBackwardCustom(req, req.seqId),
      ),
    }),
    backward: (req) => op(req, 'backward', (m) => m.backward(req)),
    optimStep: (req) =>
      op(req, 'optim_step', (m) => m.optimStep(req, pod.allReduce, pod.shardedStep)),
    joinCollective: (req) => pod.joinCollective(req),
    sample: (req) => op(req, 'sample', (m) => m.sample(req)),
    saveState: (req) => op(req, 'save_state', (m) => pod.saveState(m, req)),
    loadState: (req) => op(req, 'load_state', (m) => pod.loadState(m, req.path, false)),
    loadStateWithOptimizer: (req) =>
      op(req, 'load_state_with_optimizer', (m) =>
        pod.loadState(m, req.path, true, req.dataParallel),
      ),
    saveWeightsForSampler: (req) =>
      op(req, 'save_weights_for_sampler', (m) =>
        pod
          .checkpoints('save_weights_for_sampler')
          .saveForSampler(m, req.name, req.checkpointType, Number(req.ttlSeconds), req.exactName),
      ),
    listCheckpoints: (req) =>
      op(req, 'list_checkpoints', async () => ({
        checkpoints: await pod.checkpoints('list_checkpoints').list(),
      })),
    resolveCheckpointPath: (req) =>
      op(req, 'resolve_checkpoint_path', async () => ({
        path: await pod
          .checkpoints('resolve_checkpoint_path')
          .resolve(req.checkpointName, req.sourceJobId),
      })),
    loadAdapter: (req) =>
      op(req, 'load_adapter', async (m) => {
        await pod.checkpoints('load_adapter').loadAdapter(m, req.adapterPath);
        return {};
      }),
  };
}

function handlers(
  impl: Impl,
  log: Logger,
  metrics?: TrainerMetrics,
): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  const given = impl as unknown as Record<
    string,
    (request: unknown) => MessageInitShape<DescMethod['output']> | Promise<unknown>
  >;
  for (const method of TrainerService.methods) {
    const fn = given[method.localName]!;
    const handle: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
      const start = process.hrtime.bigint();
      const observe = (code: string) =>
        metrics?.observeRpc(method.name, code, Number(process.hrtime.bigint() - start) / 1e9);
      Promise.resolve()
        .then(() => fn(call.request))
        .then(
          (response) => {
            observe('ok');
            callback(null, create(method.output, response as never));
          },
          (thrown: unknown) => {
            const error = asTrainerError(thrown);
            observe(error.code);
            const fields = { rpc: method.name, code: error.code, err: error.message };
            if (error.code === 'internal')
              log.error({ ...fields, stack: (thrown as Error)?.stack }, 'operation failed');
            else log.warn(fields, 'operation rejected');
            callback(toGrpcError(error));
          },
        );
    };
    out[method.localName] = handle as grpc.UntypedHandleCall;
  }
  return out;
}

export interface TrainerServer {
  server: grpc.Server;
  /** Binds host:port (0 = any free port); resolves to `host:port`. */
  listen(host: string, port: number): Promise<string>;
  /** Graceful shutdown; forced after `graceMs`. */
  shutdown(graceMs?: number): Promise<void>;
}

/**
 * A pod's server; every call must present `token` (see auth.ts), health checks included.
 * With `metrics`, every TrainerService call is counted and timed there.
 */
export function createTrainerServer(
  pod: TrainerPod,
  log: Logger,
  token: string,
  metrics?: TrainerMetrics,
): TrainerServer {
  const server = new grpc.Server({
    ...TRAINER_CHANNEL_OPTIONS,
    interceptors: [trainerAuthInterceptor(token)],
  });
  server.addService(
    serviceDefinition(TrainerService),
    handlers(trainerImplementation(pod), log, metrics),
  );
  addService(server, HealthService, {
    check: (req) => ({
      status:
        req.service === '' || req.service === TrainerService.typeName
          ? pod.isDraining
            ? HealthCheckResponse_ServingStatus.NOT_SERVING
            : HealthCheckResponse_ServingStatus.SERVING
          : HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN,
      version: TRAINER_VERSION,
      uptimeMs: pod.health().uptimeMs,
    }),
  });
  return {
    server,
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        server.bindAsync(
          `${host}:${port}`,
          grpc.ServerCredentials.createInsecure(),
          (error, bound) => (error ? reject(error) : resolve(`${host}:${bound}`)),
        );
      }),
    shutdown: (graceMs = 5_000) =>
      new Promise((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

/**
 * The Tinker-wire trainer gateway on the control plane's own port:
 *
 *   /training/v1/rlorTrainerJobs/{account}/{job}/api/v1/{op}
 *
 * what the Fireworks training SDK (`FiretitanServiceClient`) and the plain `tinker` client
 * talk to. It is a thin adapter over the pod's TrainerService: every op is translated
 * (wire.ts) and handed to the pod of that job over gRPC (trainers.ts); the ops that are
 * futures on the wire become entries of the future table (futures.ts), fetched with
 * `retrieve_future` long-polls. The pod orders each model's ops by seq_id and deduplicates
 * retries, so the gateway keeps no training state of its own.
 *
 * Statuses follow what the clients do with them: a permanent failure is a 4xx with a JSON
 * body (they retry 408, 409, 429 and 5xx for minutes), a pod that is not serving yet is 503.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { CheckpointCatalog } from '../../../checkpoints/catalog/catalog.js';
import {
  type CreateModelRequestSchema,
  type ForwardBackwardOutput,
  fromGrpcError,
  ServingStatus,
  type TrainerError,
} from '../../../trainer/index.js';
import type { Deps } from '../../context.js';
import { principalOf } from '../../http/auth.js';
import { ApiError, invalid, notFound, toApiError, zodMessage } from '../../http/errors.js';
import { type FutureOutcome, FutureTable, type FutureTableOptions } from './futures.js';
import { decodeForwardBackward, encodeForwardOutput, PROTOBUF_CONTENT_TYPE } from './protobuf.js';
import { TrainerChannels, type TrainerTarget } from './trainers.js';
import {
  checkpointRef,
  createModelBody,
  createSessionBody,
  forwardBackwardBody,
  forwardBody,
  fromProtoOutput,
  getInfoBody,
  infoJson,
  loadAdapterBody,
  loadWeightsBody,
  loraConfig,
  optimStepBody,
  retrieveFutureBody,
  samplerCheckpointType,
  saveForSamplerBody,
  saveWeightsBody,
  sessionBody,
  stringMap,
  telemetryBody,
  toForwardRequest,
  toOptimStepRequest,
  unloadModelBody,
} from './wire.js';

export const TRAINER_GATEWAY_ROUTE = '/training/v1/rlorTrainerJobs/:account/:job/api/v1/*';

interface Params {
  account: string;
  job: string;
  '*': string;
}

interface OpCtx {
  req: FastifyRequest;
  /** The JSON body (a protobuf forward_backward already decoded into the JSON form). */
  body: unknown;
  reply: FastifyReply;
  trainer: () => Promise<TrainerTarget>;
  account: string;
}

/** gRPC statuses of a permanent failure the client caused (never retried). */
const USER_CODES = new Set([
  'INVALID_ARGUMENT',
  'FAILED_PRECONDITION',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'OUT_OF_RANGE',
  'RESOURCE_EXHAUSTED',
  'UNIMPLEMENTED',
  'PERMISSION_DENIED',
]);

function grpcName(e: TrainerError): string {
  return (
    [
      'OK',
      'CANCELLED',
      'UNKNOWN',
      'INVALID_ARGUMENT',
      'DEADLINE_EXCEEDED',
      'NOT_FOUND',
      'ALREADY_EXISTS',
      'PERMISSION_DENIED',
      'RESOURCE_EXHAUSTED',
      'FAILED_PRECONDITION',
      'ABORTED',
      'OUT_OF_RANGE',
      'UNIMPLEMENTED',
      'INTERNAL',
      'UNAVAILABLE',
      'DATA_LOSS',
      'UNAUTHENTICATED',
    ][e.grpcStatus] ?? 'UNKNOWN'
  );
}

/**
 * A trainer error as the gateway answers it directly: permanent ones are 400 (404 for an
 * unknown model or session), never 409; a pod that is going away is 503.
 */
function gatewayError(err: unknown, what: string): ApiError {
  if (err instanceof ApiError)
    return err.httpStatus === 409 ? new ApiError(err.status, err.message, err.details, 400) : err;
  const e = fromGrpcError(err, what);
  const code = grpcName(e);
  if (code === 'NOT_FOUND') return notFound(e.message);
  if (USER_CODES.has(code)) return new ApiError('FAILED_PRECONDITION', e.message, undefined, 400);
  if (code === 'UNAVAILABLE' || code === 'DEADLINE_EXCEEDED' || code === 'CANCELLED')
    return new ApiError('UNAVAILABLE', e.message);
  return new ApiError('INTERNAL', e.message);
}

/** A settled trainer call as a future's outcome. */
async function outcome(
  what: string,
  call: () => Promise<Record<string, unknown>>,
): Promise<FutureOutcome> {
  try {
    const value = await call();
    const protobuf = value[PROTOBUF_RESULT];
    delete value[PROTOBUF_RESULT];
    return {
      ok: true,
      value,
      ...(protobuf instanceof Uint8Array ? { protobuf } : {}),
    };
  } catch (err) {
    const e = fromGrpcError(err, what);
    return {
      ok: false,
      message: e.message,
      category: USER_CODES.has(grpcName(e)) ? 'user' : 'server',
    };
  }
}

/** Where a forward op's result carries its protobuf form until the future settles. */
const PROTOBUF_RESULT = '__protobuf';

function forwardResult(out: ForwardBackwardOutput | undefined): Record<string, unknown> {
  return { ...fromProtoOutput(out), [PROTOBUF_RESULT]: encodeForwardOutput(out) };
}

function parse<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body ?? {});
  if (!r.success) throw invalid(zodMessage(r.error));
  return r.data;
}

const idempotencyKey = (req: FastifyRequest) => {
  const v = req.headers['x-idempotency-key'];
  return typeof v === 'string' && v ? v : undefined;
};

export interface TrainerGatewayOptions {
  futures?: FutureTableOptions;
}

export function trainerGatewayRoutes(
  app: FastifyInstance,
  deps: Deps,
  opts: TrainerGatewayOptions = {},
): void {
  const channels = new TrainerChannels(deps);
  const futures = new FutureTable(opts.futures);
  app.addHook('onClose', async () => {
    channels.close();
    futures.close();
  });

  /** Starts a trainer call as a future; answers `{request_id}` (and `model_id` when known). */
  const future = async (
    ctx: OpCtx,
    what: string,
    call: (t: TrainerTarget) => Promise<Record<string, unknown>>,
    modelId?: string,
  ) => {
    const target = await ctx.trainer();
    const id = futures.start(ctx.account, idempotencyKey(ctx.req), () =>
      outcome(what, () => call(target)),
    );
    return { request_id: id, ...(modelId ? { model_id: modelId } : {}) };
  };

  const ops: Record<string, (ctx: OpCtx) => Promise<unknown>> = {
    'GET healthz': async (ctx) => {
      const { client } = await ctx.trainer();
      const health = await client.health({}, { timeoutMs: 10_000 });
      if (health.status !== ServingStatus.SERVING)
        throw new ApiError('UNAVAILABLE', 'the trainer is shutting down');
      return { status: 'ok' };
    },
    'GET get_server_capabilities': async (ctx) => {
      const { client } = await ctx.trainer();
      const health = await client.health({});
      return {
        supported_models: [
          { model_name: health.baseModel, max_context_length: health.maxContextLength },
        ],
      };
    },
    'GET list_checkpoints': async (ctx) => {
      // The trainer's resumable (DCP) checkpoints; the catalog lists them, pod or no pod.
      const target = await ctx.trainer();
      const rows = await new CheckpointCatalog(await deps.checkpoints()).listAll(target.name);
      return {
        checkpoints: rows.filter((r) => r.resumable).map((r) => r.name.split('/').pop()),
      };
    },
    'POST create_session': async (ctx) => {
      const body = parse(createSessionBody, ctx.body);
      const { client } = await ctx.trainer();
      const res = await client.createSession({
        tags: body.tags ?? [],
        userMetadata: stringMap(body.user_metadata),
        sdkVersion: body.sdk_version ?? '',
      });
      return { session_id: res.sessionId };
    },
    'POST session_heartbeat': async (ctx) => {
      const body = parse(sessionBody, ctx.body);
      const { client } = await ctx.trainer();
      await client.heartbeat({ sessionId: body.session_id });
      return {};
    },
    // The plain tinker client's start-up call (the Fireworks SDK has this built in): plain
    // HTTP transport, every other setting at the client's default.
    'POST client/config': async () => ({ use_pyqwest_transport: false }),
    'POST telemetry': async (ctx) => {
      parse(telemetryBody, ctx.body);
      return { status: 'accepted' };
    },
    'POST create_model': async (ctx) => {
      const b = parse(createModelBody, ctx.body);
      return future(ctx, 'create_model', async ({ client }) => {
        // A reference is the frozen base without an adapter: asked for with `base_only`, or
        // any model of a forward-only trainer (the SDK creates a reference trainer's model
        // as it would a policy's).
        const frozen = b.base_only || (await client.health({})).forwardOnly;
        const request: MessageInitShape<typeof CreateModelRequestSchema> = {
          sessionId: b.session_id,
          modelSeqId: b.model_seq_id,
          baseModel: b.base_model ?? '',
          userMetadata: stringMap(b.user_metadata),
          ...(frozen ? { forwardOnly: true } : { lora: loraConfig(b.lora_config) ?? { rank: 0 } }),
        };
        const res = await client.createModel(request);
        return { model_id: res.modelId, supports_policy_importance_sampling: true };
      });
    },
    'POST forward': async (ctx) => {
      const b = parse(forwardBody, ctx.body);
      const request = toForwardRequest(b, b.forward_input);
      return future(ctx, 'forward', async ({ client }) =>
        forwardResult((await client.forward(request)).output),
      );
    },
    'POST forward_backward': async (ctx) => {
      const b = parse(forwardBackwardBody, ctx.body);
      const request = toForwardRequest(b, b.forward_backward_input);
      return future(ctx, 'forward_backward', async ({ client }) =>
        forwardResult((await client.forwardBackward(request)).output),
      );
    },
    'POST optim_step': async (ctx) => {
      const b = parse(optimStepBody, ctx.body);
      const request = toOptimStepRequest(b);
      return future(ctx, 'optim_step', async ({ client }) => {
        const res = await client.optimStep(request);
        return { metrics: { ...res.metrics } };
      });
    },
    'POST save_weights': async (ctx) => {
      const b = parse(saveWeightsBody, ctx.body);
      return future(ctx, 'save_weights', async ({ client }) => {
        const res = await client.saveState({
          modelId: b.model_id,
          seqId: b.seq_id,
          name: b.path,
          ttlSeconds: BigInt(b.ttl_seconds ?? 0),
        });
        return { path: res.path.split('/').pop() ?? b.path };
      });
    },
    'POST load_weights': async (ctx) => {
      const b = parse(loadWeightsBody, ctx.body);
      const path = checkpointRef(ctx.account, b.path);
      const request = { modelId: b.model_id, seqId: b.seq_id, path };
      return future(ctx, 'load_weights', async ({ client }) => {
        const res = b.optimizer
          ? await client.loadStateWithOptimizer(request)
          : await client.loadState(request);
        return { path: res.path };
      });
    },
    'POST save_weights_for_sampler': async (ctx) => {
      const b = parse(saveForSamplerBody, ctx.body);
      return future(ctx, 'save_weights_for_sampler', async ({ client }) => {
        const res = await client.saveWeightsForSampler({
          modelId: b.model_id,
          seqId: b.seq_id,
          name: b.path,
          exactName: true,
          checkpointType: samplerCheckpointType(b.checkpoint_type),
          ttlSeconds: BigInt(b.ttl_seconds ?? 0),
        });
        return { path: res.path };
      });
    },
    'POST load_adapter': async (ctx) => {
      const b = parse(loadAdapterBody, ctx.body);
      return future(ctx, 'load_adapter', async ({ client }) => {
        await client.loadAdapter({
          modelId: b.model_id,
          seqId: b.seq_id,
          adapterPath: b.adapter_path,
        });
        return {};
      });
    },
    'POST unload_model': async (ctx) => {
      const b = parse(unloadModelBody, ctx.body);
      return future(ctx, 'unload_model', async ({ client }) => {
        const res = await client.unloadModel({ modelId: b.model_id });
        return { model_id: res.modelId, type: 'unload_model' };
      });
    },
    'POST get_info': async (ctx) => {
      const b = parse(getInfoBody, ctx.body);
      const { client } = await ctx.trainer();
      return infoJson((await client.getInfo({ modelId: b.model_id })).info, b.model_id);
    },
    'POST retrieve_future': async (ctx) => {
      const b = parse(retrieveFutureBody, ctx.body);
      const poll = await futures.poll(ctx.account, b.request_id);
      if (poll.state === 'unknown') throw notFound(`unknown request_id '${b.request_id}'`);
      if (poll.state === 'lost')
        // 410: the client resubmits the original op, which the pod answers once per seq_id
        throw new ApiError(
          'ABORTED',
          `request_id '${b.request_id}' was issued before the control plane restarted and its result is lost: resubmit the original request`,
          undefined,
          410,
        );
      if (poll.state === 'pending')
        return { type: 'try_again', request_id: b.request_id, queue_state: 'active' };
      const o = poll.outcome;
      if (!o.ok) return { error: o.message, category: o.category };
      const accept = String(ctx.req.headers.accept ?? '');
      if (o.protobuf && accept.includes(PROTOBUF_CONTENT_TYPE))
        return ctx.reply.type(PROTOBUF_CONTENT_TYPE).send(Buffer.from(o.protobuf));
      return o.value;
    },
  };

  app.register(async (scope) => {
    // The plain tinker client sends forward_backward as protobuf (protobuf.ts).
    scope.addContentTypeParser(PROTOBUF_CONTENT_TYPE, { parseAs: 'buffer' }, (_req, body, done) =>
      done(null, body),
    );
    scope.route({
      method: ['GET', 'POST'],
      url: TRAINER_GATEWAY_ROUTE,
      handler: async (req, reply) => {
        const p = req.params as Params;
        let name = p['*'];
        let body: unknown = req.body;
        try {
          if (Buffer.isBuffer(body)) {
            if (name !== 'forward_backward')
              throw invalid(`${name}: send JSON (only forward_backward takes a protobuf body)`);
            ({ op: name, body } = decodeForwardBackward(body));
          }
        } catch (err) {
          throw gatewayError(err, p['*']);
        }
        const op = ops[`${req.method} ${name}`];
        if (!op) throw notFound(`no trainer gateway operation ${req.method} ${p['*']}`);
        const principal = principalOf(req);
        let target: Promise<TrainerTarget> | undefined;
        const ctx: OpCtx = {
          req,
          reply,
          body,
          account: p.account,
          trainer: () => {
            target ??= channels.resolve(principal.account, p.account, p.job);
            return target;
          },
        };
        try {
          return await op(ctx);
        } catch (err) {
          throw gatewayError(err instanceof ApiError ? err : toGatewayInput(err), p['*']);
        }
      },
    });
  });
}

/** Errors that are not the trainer's (validation, the store) keep their API mapping. */
function toGatewayInput(err: unknown): unknown {
  const api = toApiError(err);
  return api.status === 'INTERNAL' ? err : api;
}

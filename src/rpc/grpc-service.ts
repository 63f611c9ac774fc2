/**
 * Glue between protobuf-es v2 service descriptors (`GenService`, generated into src/gen by
 * protoc-gen-es) and @grpc/grpc-js.
 *
 * Server side: `serviceDefinition(HealthService)` is a grpc-js `ServiceDefinition` whose
 * methods use the paths `/<package>.<Service>/<Method>` and (de)serialise with protobuf-es
 * `toBinary` / `fromBinary`; `addService(server, HealthService, impl)` registers it with
 * promise-returning unary handlers. Methods missing from `impl` answer UNIMPLEMENTED.
 *
 * Client side: `unaryCall(client, HealthService.method.check, request)` makes one typed
 * unary call and returns a promise; `createClient(HealthService, address)` wraps every
 * unary method of a service that way.
 */
import {
  create,
  type DescMessage,
  type DescMethod,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import * as grpc from '@grpc/grpc-js';

type MethodShape = GenServiceMethods[string];
type Input<M extends MethodShape> = MessageShape<M['input']>;
type Output<M extends MethodShape> = MessageShape<M['output']>;
type OutputInit<M extends MethodShape> = MessageInitShape<M['output']>;

/** The localNames of a service's unary methods (`check` for `rpc Check`). */
export type UnaryMethodName<S extends GenServiceMethods> = {
  [K in keyof S]: S[K]['methodKind'] extends 'unary' ? K : never;
}[keyof S] &
  string;

/**
 * A unary handler: receives the decoded request, returns (or resolves to) the response, as a
 * message or as an init object (`{ status: ..., version: '...' }`). A thrown error becomes a
 * gRPC error status, see `toServiceError`.
 */
export type UnaryHandler<M extends MethodShape> = (
  request: Input<M>,
  call: grpc.ServerUnaryCall<Input<M>, Output<M>>,
) => OutputInit<M> | Promise<OutputInit<M>>;

/** Streaming methods are implemented with the plain grpc-js handler, typed with the messages. */
export type MethodHandler<M extends MethodShape> = M['methodKind'] extends 'unary'
  ? UnaryHandler<M>
  : M['methodKind'] extends 'server_streaming'
    ? grpc.handleServerStreamingCall<Input<M>, Output<M>>
    : M['methodKind'] extends 'client_streaming'
      ? grpc.handleClientStreamingCall<Input<M>, Output<M>>
      : grpc.handleBidiStreamingCall<Input<M>, Output<M>>;

/** Handlers keyed by method localName; any that are left out answer UNIMPLEMENTED. */
export type ServiceImplementation<S extends GenServiceMethods> = {
  [K in keyof S]?: MethodHandler<S[K]>;
};

/** The gRPC path of a method: `/temper.v1.HealthService/Check`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function serializer<D extends DescMessage>(schema: D): (value: MessageShape<D>) => Buffer {
  return (value) => {
    const bytes = toBinary(schema, value);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> {
  return (bytes) => fromBinary(schema, bytes);
}

/** The grpc-js definition of one method. */
export function methodDefinition<M extends MethodShape>(
  method: M & DescMethod,
): grpc.MethodDefinition<Input<M>, Output<M>> {
  return {
    path: methodPath(method),
    originalName: method.name,
    requestStream:
      method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
    responseStream:
      method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
    requestSerialize: serializer<M['input']>(method.input),
    requestDeserialize: deserializer<M['input']>(method.input),
    responseSerialize: serializer<M['output']>(method.output),
    responseDeserialize: deserializer<M['output']>(method.output),
  };
}

/** The grpc-js `ServiceDefinition` of a protobuf-es service, keyed by method localName. */
export function serviceDefinition<S extends GenServiceMethods>(
  service: GenService<S>,
): grpc.ServiceDefinition<{ [K in keyof S]: grpc.UntypedHandleCall }> {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = methodDefinition(method) as grpc.MethodDefinition<
      unknown,
      unknown
    >;
  }
  return definition as grpc.ServiceDefinition<{ [K in keyof S]: grpc.UntypedHandleCall }>;
}

/** A gRPC status other than OK (1 CANCELLED .. 16 UNAUTHENTICATED). */
function isErrorStatus(value: unknown): value is grpc.status {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 16;
}

/**
 * Maps a thrown value to the error a grpc-js handler reports. An error carrying a numeric
 * `grpcStatus` (temper's typed errors) or a numeric gRPC `code` (a grpc-js ServiceError
 * passed through) keeps that status; anything else is INTERNAL with the error's message.
 */
export function toServiceError(error: unknown): Partial<grpc.StatusObject> {
  if (error !== null && typeof error === 'object') {
    const e = error as { grpcStatus?: unknown; code?: unknown; message?: unknown };
    const code = isErrorStatus(e.grpcStatus)
      ? e.grpcStatus
      : isErrorStatus(e.code)
        ? e.code
        : grpc.status.INTERNAL;
    const details = typeof e.message === 'string' ? e.message : String(error);
    return { code, details };
  }
  return { code: grpc.status.INTERNAL, details: String(error) };
}

function unaryServerHandler<M extends MethodShape>(
  method: M & DescMethod,
  handler: UnaryHandler<M>,
): grpc.handleUnaryCall<Input<M>, Output<M>> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => handler(call.request, call))
      .then(
        (response) => callback(null, create(method.output, response) as Output<M>),
        (error: unknown) => callback(toServiceError(error)),
      );
  };
}

function unimplementedHandler(method: DescMethod): grpc.UntypedHandleCall {
  const error: Partial<grpc.StatusObject> = {
    code: grpc.status.UNIMPLEMENTED,
    details: `${methodPath(method)} is not implemented by this server`,
  };
  switch (method.methodKind) {
    case 'unary':
    case 'client_streaming':
      return ((_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
        callback(error)) as grpc.UntypedHandleCall;
    default:
      return ((call: grpc.ServerWritableStream<unknown, unknown>) =>
        call.emit('error', error)) as grpc.UntypedHandleCall;
  }
}

/** grpc-js handlers for `impl`, keyed like `serviceDefinition(service)`. */
export function serviceHandlers<S extends GenServiceMethods>(
  service: GenService<S>,
  impl: ServiceImplementation<S>,
): grpc.UntypedServiceImplementation {
  const handlers: grpc.UntypedServiceImplementation = {};
  const given = impl as Record<string, unknown>;
  for (const method of service.methods) {
    const handler = given[method.localName];
    if (typeof handler !== 'function') {
      handlers[method.localName] = unimplementedHandler(method);
    } else if (method.methodKind === 'unary') {
      handlers[method.localName] = unaryServerHandler(
        method,
        handler as UnaryHandler<MethodShape>,
      ) as grpc.UntypedHandleCall;
    } else {
      handlers[method.localName] = handler as grpc.UntypedHandleCall;
    }
  }
  return handlers;
}

/** Registers a protobuf-es service on a grpc-js server. */
export function addService<S extends GenServiceMethods>(
  server: grpc.Server,
  service: GenService<S>,
  impl: ServiceImplementation<S>,
): void {
  server.addService(serviceDefinition(service), serviceHandlers(service, impl));
}

/** Options of one client call. */
export interface UnaryCallOptions {
  /** Absolute deadline (Date or epoch ms) after which the call fails with DEADLINE_EXCEEDED. */
  deadline?: Date | number;
  /** Relative alternative to `deadline`. */
  timeoutMs?: number;
  metadata?: grpc.Metadata;
  /** Aborting cancels the call; the promise rejects with status CANCELLED. */
  signal?: AbortSignal;
}

/**
 * One typed unary call. Resolves to the decoded response; rejects with the grpc-js
 * `ServiceError` (`code` is a `grpc.status`).
 */
export function unaryCall<M extends MethodShape>(
  client: grpc.Client,
  method: M & DescMethod,
  request: MessageInitShape<M['input']>,
  options: UnaryCallOptions = {},
): Promise<Output<M>> {
  if (method.methodKind !== 'unary') {
    return Promise.reject(new TypeError(`${methodPath(method)} is not a unary method`));
  }
  const callOptions: grpc.CallOptions = {};
  if (options.deadline !== undefined) callOptions.deadline = options.deadline;
  else if (options.timeoutMs !== undefined) callOptions.deadline = Date.now() + options.timeoutMs;
  const message = create(method.input, request) as Input<M>;
  return new Promise<Output<M>>((resolve, reject) => {
    const call = client.makeUnaryRequest<Input<M>, Output<M>>(
      methodPath(method),
      serializer<M['input']>(method.input),
      deserializer<M['output']>(method.output),
      message,
      options.metadata ?? new grpc.Metadata(),
      callOptions,
      (error, response) => {
        options.signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else if (response === undefined) reject(new Error(`${methodPath(method)}: empty response`));
        else resolve(response);
      },
    );
    function onAbort(): void {
      call.cancel();
    }
    if (options.signal?.aborted) call.cancel();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A promise-based client: one async function per unary method, plus `close()`. */
export type PromiseClient<S extends GenServiceMethods> = {
  [K in UnaryMethodName<S>]: (
    request: MessageInitShape<S[K]['input']>,
    options?: UnaryCallOptions,
  ) => Promise<MessageShape<S[K]['output']>>;
} & {
  /** The underlying grpc-js client (channel state, waitForReady). */
  readonly grpcClient: grpc.Client;
  close(): void;
};

export interface CreateClientOptions {
  /** Defaults to insecure (plaintext) credentials. */
  credentials?: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
  /** Sent with every call (a credential); a call's own metadata is added to it. */
  metadata?: grpc.Metadata;
}

/** A promise-based client for every unary method of `service` at `address` (`host:port`). */
export function createClient<S extends GenServiceMethods>(
  service: GenService<S>,
  address: string,
  options: CreateClientOptions = {},
): PromiseClient<S> {
  const grpcClient = new grpc.Client(
    address,
    options.credentials ?? grpc.credentials.createInsecure(),
    options.channelOptions,
  );
  const client: Record<string, unknown> = {
    grpcClient,
    close: () => grpcClient.close(),
  };
  for (const method of service.methods) {
    if (method.methodKind !== 'unary') continue;
    client[method.localName] = (
      request: MessageInitShape<DescMessage>,
      callOptions?: UnaryCallOptions,
    ) => {
      if (!options.metadata) return unaryCall(grpcClient, method, request, callOptions);
      const metadata = options.metadata.clone();
      if (callOptions?.metadata) metadata.merge(callOptions.metadata);
      return unaryCall(grpcClient, method, request, { ...callOptions, metadata });
    };
  }
  return client as PromiseClient<S>;
}

import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
  HealthService,
} from '../../src/gen/temper/v1/health_pb.js';
import {
  addService,
  createClient,
  methodPath,
  serviceDefinition,
  unaryCall,
} from '../../src/rpc/grpc-service.js';

function listen(server: grpc.Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
      if (error) reject(error);
      else resolve(`127.0.0.1:${port}`);
    });
  });
}

function shutdown(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => server.tryShutdown(() => resolve()));
}

async function expectStatus(
  promise: Promise<unknown>,
  code: grpc.status,
): Promise<grpc.ServiceError> {
  const error = await promise.then(
    () => {
      throw new Error(`expected the call to fail with status ${grpc.status[code]}`);
    },
    (e: unknown) => e as grpc.ServiceError,
  );
  expect(grpc.status[error.code]).toBe(grpc.status[code]);
  return error;
}

describe('HealthService over a real grpc-js server', () => {
  const server = new grpc.Server();
  const bare = new grpc.Server(); // HealthService registered with no handlers
  const startedAt = Date.now();
  const seen: string[] = [];
  let address = '';
  let bareAddress = '';

  beforeAll(async () => {
    addService(server, HealthService, {
      async check(request, call) {
        seen.push(request.service);
        const who = call.metadata.get('x-temper-test')[0];
        if (request.service === 'boom')
          throw Object.assign(new Error('no such pod'), { grpcStatus: grpc.status.NOT_FOUND });
        return {
          status:
            request.service === '' || request.service === HealthService.typeName
              ? HealthCheckResponse_ServingStatus.SERVING
              : HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN,
          version: `0.1.0${who ? `+${String(who)}` : ''}`,
          uptimeMs: BigInt(Date.now() - startedAt),
        };
      },
    });
    addService(bare, HealthService, {});
    [address, bareAddress] = await Promise.all([listen(server), listen(bare)]);
  });

  afterAll(async () => {
    await Promise.all([shutdown(server), shutdown(bare)]);
  });

  it('builds the grpc-js definition from the protobuf-es descriptor', () => {
    const definition = serviceDefinition(HealthService);
    expect(Object.keys(definition)).toEqual(['check']);
    const check = definition.check;
    expect(check.path).toBe('/temper.v1.HealthService/Check');
    expect(check.originalName).toBe('Check');
    expect(check.requestStream).toBe(false);
    expect(check.responseStream).toBe(false);
    const request = create(HealthCheckRequestSchema, { service: 'x' });
    const wire = check.requestSerialize(request);
    expect(Buffer.isBuffer(wire)).toBe(true);
    expect(Buffer.compare(wire, Buffer.from(toBinary(HealthCheckRequestSchema, request)))).toBe(0);
    expect(check.requestDeserialize(wire)).toEqual(request);
  });

  it('answers Check through the promise client', async () => {
    const client = createClient(HealthService, address);
    try {
      const response = await client.check(
        { service: 'temper.v1.HealthService' },
        { timeoutMs: 5_000 },
      );
      expect(response.$typeName).toBe('temper.v1.HealthCheckResponse');
      expect(response.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      expect(response.version).toBe('0.1.0');
      expect(typeof response.uptimeMs).toBe('bigint');
      expect(response.uptimeMs).toBeGreaterThanOrEqual(0n);

      const unknown = await client.check({ service: 'temper.v1.Nope' });
      expect(unknown.status).toBe(HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN);
      expect(seen).toContain('temper.v1.Nope');
    } finally {
      client.close();
    }
  });

  it('passes metadata and maps a handler error to its gRPC status', async () => {
    const client = createClient(HealthService, address);
    try {
      const metadata = new grpc.Metadata();
      metadata.set('x-temper-test', 'meta');
      const response = await client.check({}, { metadata });
      expect(response.version).toBe('0.1.0+meta');

      const error = await expectStatus(client.check({ service: 'boom' }), grpc.status.NOT_FOUND);
      expect(error.details).toBe('no such pod');
    } finally {
      client.close();
    }
  });

  it('makes a typed unary call on a plain grpc-js client', async () => {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const response = await unaryCall(client, HealthService.method.check, { service: '' });
      expect(response.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      client.close();
    }
  });

  it('returns UNIMPLEMENTED for a method the server does not implement', async () => {
    const client = createClient(HealthService, bareAddress);
    try {
      const error = await expectStatus(client.check({}), grpc.status.UNIMPLEMENTED);
      expect(error.details).toContain(methodPath(HealthService.method.check));
    } finally {
      client.close();
    }
  });

  it('returns UNIMPLEMENTED for a method path the server does not know', async () => {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const call = new Promise<unknown>((resolve, reject) => {
        client.makeUnaryRequest(
          '/temper.v1.HealthService/Watch',
          (value: Uint8Array) => Buffer.from(value),
          (bytes: Buffer) => fromBinary(HealthCheckResponseSchema, bytes),
          toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema)),
          (error, value) => (error ? reject(error) : resolve(value)),
        );
      });
      await expectStatus(call, grpc.status.UNIMPLEMENTED);
    } finally {
      client.close();
    }
  });

  it('cancels a call when its AbortSignal fires', async () => {
    const client = createClient(HealthService, address);
    try {
      const controller = new AbortController();
      controller.abort();
      await expectStatus(client.check({}, { signal: controller.signal }), grpc.status.CANCELLED);
    } finally {
      client.close();
    }
  });
});

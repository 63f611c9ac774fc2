import { create, equals, fromBinary, fromJson, toBinary, toJson } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import {
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
  HealthService,
} from '../../src/gen/temper/v1/health_pb.js';

describe('generated temper.v1 health messages', () => {
  // Every field set to a non-default value; uptime beyond 2^53 to prove int64 stays exact.
  const response = create(HealthCheckResponseSchema, {
    status: HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN,
    version: '0.1.0-ünïcode',
    uptimeMs: 9_007_199_254_740_993n,
  });

  it('round-trips a response through the binary wire format', () => {
    const bytes = toBinary(HealthCheckResponseSchema, response);
    const decoded = fromBinary(HealthCheckResponseSchema, bytes);
    expect(equals(HealthCheckResponseSchema, decoded, response)).toBe(true);
    expect(decoded.uptimeMs).toBe(9_007_199_254_740_993n);
    expect(decoded.status).toBe(HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN);
  });

  it('round-trips a response through canonical proto3 JSON', () => {
    const json = toJson(HealthCheckResponseSchema, response);
    expect(json).toEqual({
      status: 'SERVING_STATUS_SERVICE_UNKNOWN',
      version: '0.1.0-ünïcode',
      uptimeMs: '9007199254740993',
    });
    const decoded = fromJson(HealthCheckResponseSchema, JSON.parse(JSON.stringify(json)));
    expect(equals(HealthCheckResponseSchema, decoded, response)).toBe(true);
  });

  it('round-trips a request through binary and JSON', () => {
    const request = create(HealthCheckRequestSchema, { service: 'temper.v1.HealthService' });
    const viaBinary = fromBinary(
      HealthCheckRequestSchema,
      toBinary(HealthCheckRequestSchema, request),
    );
    const viaJson = fromJson(HealthCheckRequestSchema, toJson(HealthCheckRequestSchema, request));
    expect(viaBinary.service).toBe('temper.v1.HealthService');
    expect(equals(HealthCheckRequestSchema, viaJson, request)).toBe(true);
  });

  it('encodes defaults as zero bytes and reads unknown enum values back unchanged', () => {
    expect(toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema)).length).toBe(0);
    const future = create(HealthCheckResponseSchema, {
      status: 42 as HealthCheckResponse_ServingStatus,
    });
    const decoded = fromBinary(
      HealthCheckResponseSchema,
      toBinary(HealthCheckResponseSchema, future),
    );
    expect(decoded.status).toBe(42);
  });

  it('describes the service with the gRPC method path parts', () => {
    expect(HealthService.typeName).toBe('temper.v1.HealthService');
    expect(HealthService.method.check.name).toBe('Check');
    expect(HealthService.method.check.methodKind).toBe('unary');
    expect(HealthService.method.check.input).toBe(HealthCheckRequestSchema);
  });
});

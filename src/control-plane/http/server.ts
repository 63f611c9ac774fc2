/**
 * The Fastify application: API-key authentication on every `/v1/` route, the one error
 * shape (errors.ts), multipart uploads, and the collections' routes.
 */
import multipart from '@fastify/multipart';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Deps } from '../context.js';
import { authenticate } from './auth.js';
import { ApiError, invalid, toApiError } from './errors.js';
import { controlPlaneMetrics } from './metrics.js';
import { type CollectionRoutes, registerCollection } from './router.js';

/** JSON bodies: evaluator sources travel inline, so more than Fastify's 1 MiB default. */
const JSON_BODY_LIMIT = 8 << 20;

/** The Tinker-wire trainer gateway (Python SDK); the only place `tml-` keys are accepted. */
export const TRAINER_GATEWAY_PREFIX = '/training/v1/';
/**
 * Every path that needs a key: the REST API, and the trainer, hot-load and inference
 * gateways the Python SDK reaches on this same origin.
 */
const AUTHENTICATED_PREFIXES = ['/v1/', TRAINER_GATEWAY_PREFIX, '/hot_load/v1/', '/inference/v1/'];

export function buildServer(deps: Deps, collections: CollectionRoutes[]): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    // Errors are logged by the error handler; one line per request is noise at this rate.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
  });
  app.register(multipart, { limits: { fileSize: deps.maxUploadBytes, files: 1 } });
  // Custom methods (`:cancel`) are often sent with a JSON content type and no body.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    if (String(body).trim() === '') return done(null, undefined);
    try {
      // No prototype keys: bodies are copied with spreads further down.
      done(
        null,
        JSON.parse(String(body), (k, v) => (k === '__proto__' ? undefined : v)),
      );
    } catch (err) {
      done(invalid(`body is not valid JSON: ${(err as Error).message}`));
    }
  });

  app.addHook('onRequest', async (req) => {
    const prefix = AUTHENTICATED_PREFIXES.find((p) => req.url.startsWith(p));
    if (prefix)
      req.principal = await authenticate(deps.store, req, {
        tinkerPrefix: prefix === TRAINER_GATEWAY_PREFIX,
      });
  });

  app.setErrorHandler((err, req, reply) => {
    const api = toApiError(err);
    if (api.httpStatus >= 500) req.log.error({ err, url: req.url }, api.message);
    else req.log.debug({ url: req.url, status: api.status }, api.message);
    return reply.status(api.httpStatus).send(api.toJSON());
  });

  app.setNotFoundHandler((req, reply) => {
    const api = new ApiError('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`);
    return reply.status(api.httpStatus).send(api.toJSON());
  });

  // Prometheus: every answered request by its route pattern (404s as 'unmatched'); /metrics
  // itself is open, as scrapers expect, and shows no account, resource or key (metrics.ts).
  const metrics = controlPlaneMetrics(deps.store);
  app.addHook('onResponse', async (req, reply) => {
    metrics.observe(
      req.method,
      req.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
  });
  app.get('/metrics', async (_req, reply) => {
    const { body, contentType } = await metrics.render();
    return reply.type(contentType).send(body);
  });
  app.get('/healthz', async () => ({ ok: true }));
  app.register(async (scope) => {
    for (const c of collections) registerCollection(scope, c);
  });
  return app;
}

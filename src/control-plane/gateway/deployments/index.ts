/**
 * The hot-load and inference routes on the control-plane port,
 *
 *   /hot_load/v1/...   /inference/v1/...
 *
 * which the Fireworks SDK (DeploymentManager, WeightSyncer, DeploymentSampler) and OpenAI-style
 * clients call on the same origin as the REST API. Each request is routed to its deployment
 * (routing.ts), checked against the caller's account (the key was authenticated by the
 * server's hook; another account's deployment answers 404 like a missing one), and passed on
 * unchanged to that deployment's own gateway (src/deployments): a proxy, not a second
 * implementation of serving. Request bodies are small JSON and are read whole (the model field
 * routes them); responses, SSE streams included, are piped through as they come, and a client
 * that goes away closes the upstream request, which stops the generation.
 */
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { DeploymentRegistry } from '../../../deployments/registry.js';
import type { Deps } from '../../context.js';
import { principalOf } from '../../http/auth.js';
import { ApiError } from '../../http/errors.js';
import {
  bodyModel,
  DEPLOYMENT_HEADER,
  type RoutableDeployment,
  requestTarget,
  resolveTarget,
} from './routing.js';

export const DEPLOYMENT_GATEWAY_PREFIXES = ['/hot_load/v1/', '/inference/v1/'] as const;

/** Headers that belong to one connection, or carry the caller's key (the gateway needs none). */
const NOT_FORWARDED = new Set([
  'host',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'proxy-authorization',
  'content-length',
  'authorization',
  'x-api-key',
]);
const NOT_RETURNED = new Set(['connection', 'keep-alive', 'transfer-encoding']);

function routable(registry: DeploymentRegistry | undefined, account: string) {
  const toRoutable = (d: ReturnType<DeploymentRegistry['get']>): RoutableDeployment => {
    const model = (d.fields as { model?: unknown }).model;
    return {
      name: d.name,
      models: typeof model === 'string' ? [d.baseModel, model] : [d.baseModel],
      ready: d.state === 'READY',
    };
  };
  return {
    visible: (name: string) => {
      const d = registry?.list(account).find((x) => x.name === name);
      return d ? toRoutable(d) : undefined;
    },
    all: () => (registry?.list(account) ?? []).map(toRoutable),
  };
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? undefined : s;
}

function forwardedHeaders(headers: IncomingHttpHeaders, deployment: string, length: number) {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers))
    if (v !== undefined && !NOT_FORWARDED.has(k)) out[k] = v;
  out[DEPLOYMENT_HEADER] = deployment;
  if (length > 0) out['content-length'] = String(length);
  return out;
}

export function deploymentGatewayRoutes(app: FastifyInstance, deps: Deps): void {
  // One keep-alive pool to the deployments' gateways (loopback): no connection set-up per
  // sampled completion.
  const agent = new Agent({ keepAlive: true, maxSockets: 512 });
  app.addHook('onClose', async () => agent.destroy());

  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    const principal = principalOf(req);
    const path = req.url.split('?')[0] ?? req.url;
    const body = Buffer.isBuffer(req.body) ? req.body : undefined;
    const target = requestTarget(header(req, DEPLOYMENT_HEADER), bodyModel(body), path);
    const { visible, all } = routable(deps.deployments, principal.account);
    const found = resolveTarget(target, principal.account, visible, all);
    const deployment = deps.deployments?.get(found.name);
    if (!deployment?.gatewayUrl || deployment.state !== 'READY')
      throw new ApiError(
        'UNAVAILABLE',
        `${found.name} is ${deployment?.state ?? 'not serving'}: retry when it is READY`,
      );
    const upstream = new URL(req.url, deployment.gatewayUrl);
    await proxy(req, reply, upstream, {
      agent,
      // the caller's key was checked above; the gateway gets the deployment's own token
      headers: {
        ...forwardedHeaders(req.headers, found.name, body?.length ?? 0),
        ...deps.deployments?.authHeaders(found.name),
      },
      body,
      deployment: found.name,
    });
  };

  app.register(async (scope) => {
    // Bodies reach the handler as bytes, whatever their content type, and go on unchanged.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, raw, done) => done(null, raw));
    for (const prefix of DEPLOYMENT_GATEWAY_PREFIXES) scope.all(`${prefix}*`, handler);
  });
}

/** Sends the request upstream and pipes the answer back as it arrives. */
function proxy(
  req: FastifyRequest,
  reply: FastifyReply,
  url: URL,
  o: {
    agent: Agent;
    headers: Record<string, string | string[]>;
    body: Buffer | undefined;
    deployment: string;
  },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const out = httpRequest(url, { method: req.method, headers: o.headers, agent: o.agent });
    // SSE events are small writes, one per token: no Nagle delay on either socket
    out.setNoDelay(true);
    req.raw.socket.setNoDelay(true);
    let answered = false;
    out.on('response', (res) => {
      answered = true;
      reply.hijack();
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(res.headers))
        if (v !== undefined && !NOT_RETURNED.has(k)) headers[k] = v;
      reply.raw.writeHead(res.statusCode ?? 502, headers);
      // SSE events go out as they come: no buffering between the two sockets.
      reply.raw.flushHeaders();
      res.pipe(reply.raw);
      res.on('error', () => reply.raw.destroy());
      res.on('end', () => resolve());
      res.on('close', () => resolve());
    });
    out.on('error', (err) => {
      if (answered) return;
      reject(
        new ApiError(
          'UNAVAILABLE',
          `${o.deployment}: its gateway did not answer (${err.message}); retry`,
        ),
      );
    });
    // A caller that disconnects stops the upstream request (and so the generation).
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) out.destroy();
    });
    out.end(o.body);
  });
}

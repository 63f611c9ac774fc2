/**
 * The hot-load and inference routes on the control-plane port,
 *
 *   /hot_load/v1/...   /inference/v1/...
 *
 * which the Fireworks SDK (DeploymentManager, WeightSyncer, DeploymentSampler) and OpenAI-style
 * clients call on the same origin as the REST API. Each request is routed to its deployment
 * (routing.ts), checked against the caller's account (the key was authenticated by the
 * server's hook; another account's deployment answers 404 like a missing one), and handed to
 * that deployment's own gateway (src/deployments), which runs in this process: the gateway
 * serves it on this socket exactly as it would over its own port, without a loopback hop (not
 * a second implementation of serving). Request bodies are small JSON and are read whole (the
 * model field routes them); SSE streams go out as they are generated, and a client that goes
 * away stops the generation.
 */
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

function routable(registry: DeploymentRegistry | undefined, account: string) {
  const toRoutable = (d: ReturnType<DeploymentRegistry['get']>): RoutableDeployment => {
    const model = (d.fields as { model?: unknown }).model;
    let models = typeof model === 'string' ? [d.baseModel, model] : [d.baseModel];
    try {
      // what its gateway serves now: the base, a merged LoRA model, multi-LoRA addons
      if (registry)
        models = registry
          .gateway(d.name)
          .models()
          .map((m) => m.id);
    } catch {
      // no gateway (FAILED, or being restarted): what it was created with
    }
    return { name: d.name, models, ready: d.state === 'READY' };
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

export function deploymentGatewayRoutes(app: FastifyInstance, deps: Deps): void {
  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    const principal = principalOf(req);
    const path = req.url.split('?')[0] ?? req.url;
    const body = Buffer.isBuffer(req.body) ? req.body : undefined;
    const target = requestTarget(header(req, DEPLOYMENT_HEADER), bodyModel(body), path);
    const { visible, all } = routable(deps.deployments, principal.account);
    if ('everyDeployment' in target) return listModels(req, reply, deps, all());
    const found = resolveTarget(target, principal.account, visible, all);
    const deployment = deps.deployments?.get(found.name);
    if (!deployment?.gatewayUrl || deployment.state !== 'READY')
      throw new ApiError(
        'UNAVAILABLE',
        `${found.name} is ${deployment?.state ?? 'not serving'}: retry when it is READY`,
      );
    // The gateway runs in this process: the request is handed to it, not sent over loopback.
    let gateway: ReturnType<DeploymentRegistry['gateway']>;
    try {
      gateway = (deps.deployments as DeploymentRegistry).gateway(found.name);
    } catch {
      // deleted or restarted between the look-up above and now
      throw new ApiError('UNAVAILABLE', `${found.name} has no gateway now: retry`);
    }
    reply.hijack();
    // SSE events are small writes, one per token: no Nagle delay
    req.raw.socket.setNoDelay(true);
    await gateway.dispatch(req.raw, reply.raw, body ?? Buffer.alloc(0));
  };

  app.register(async (scope) => {
    // Bodies reach the handler as bytes, whatever their content type, and go on unchanged.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, raw, done) => done(null, raw));
    for (const prefix of DEPLOYMENT_GATEWAY_PREFIXES) scope.all(`${prefix}*`, handler);
  });
}

/**
 * `GET /inference/v1/models` naming no deployment: the models the caller's READY deployments
 * serve (each base model and LoRA model once, in OpenAI's list shape), as a gateway lists its
 * own.
 */
type ServedModel = ReturnType<ReturnType<DeploymentRegistry['gateway']>['models']>[number];

function listModels(
  req: FastifyRequest,
  reply: FastifyReply,
  deps: Deps,
  deployments: RoutableDeployment[],
) {
  if (req.method !== 'GET')
    throw new ApiError('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`);
  const seen = new Map<string, ServedModel>();
  for (const d of deployments) {
    if (!d.ready) continue;
    let served: ServedModel[];
    try {
      served = (deps.deployments as DeploymentRegistry).gateway(d.name).models();
    } catch {
      continue; // deleted since it was listed
    }
    for (const m of served) if (!seen.has(m.id)) seen.set(m.id, m);
  }
  return reply.send({ object: 'list', data: [...seen.values()] });
}

/**
 * Which deployment a hot-load or inference request on the control-plane port is for, read the
 * way the Fireworks clients say it:
 *
 *   - the `fireworks-deployment: accounts/{a}/deployments/{d}` header (hot-load calls always
 *     send it; it wins when the body names a model too);
 *   - else the body's `model`: `accounts/{a}/deployments/{d}` (DeploymentManager,
 *     DeploymentSampler), `accounts/{a}/models/{m}#accounts/{a}/deployments/{d}` (a model on
 *     a given deployment), or `accounts/{a}/models/{m}` alone (the caller's READY deployment
 *     that serves that model).
 *
 * Pure functions over the request's parts and the deployments the caller may see; the HTTP
 * side is in index.ts.
 */
import { invalid, notFound } from '../../http/errors.js';

const DEPLOYMENT = /^accounts\/([a-z0-9-]+)\/deployments\/([a-z0-9-]+)$/;
const MODEL = /^accounts\/([a-z0-9-]+)\/models\/([a-z0-9-]+)$/;

export const DEPLOYMENT_HEADER = 'fireworks-deployment';

/** A deployment the caller may route to: its name, what it serves, whether it is READY. */
export interface RoutableDeployment {
  name: string;
  /** The base model, and the LoRA model when the deployment serves an adapter. */
  models: string[];
  ready: boolean;
}

/**
 * The target named in a request: a deployment name, a model to find a deployment for, or (the
 * model list without a deployment) every deployment the caller may see.
 */
export type Target = { deployment: string } | { model: string } | { everyDeployment: true };

const MODELS_PATH = '/inference/v1/models';

function deploymentName(value: string, what: string): string {
  if (!DEPLOYMENT.test(value))
    throw invalid(
      `${what}: '${value}' is not a deployment name (accounts/{account}/deployments/{id})`,
    );
  return value;
}

/** The `model` of a JSON body, if the body is a JSON object that has one. */
export function bodyModel(body: Buffer | undefined): string | undefined {
  if (!body || body.length === 0) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw invalid('body is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw invalid('body: expected a JSON object');
  const model = (parsed as { model?: unknown }).model;
  if (model === undefined || model === null || model === '') return undefined;
  if (typeof model !== 'string') throw invalid('model: expected a string');
  return model;
}

/** What a model field names: a deployment, a model on a deployment, or a model. */
function modelTarget(model: string): Target {
  const hash = model.indexOf('#');
  if (hash >= 0) {
    const served = model.slice(0, hash);
    if (!MODEL.test(served))
      throw invalid(
        `model: '${served}' before '#' is not a model name (accounts/{account}/models/{id})`,
      );
    return { deployment: deploymentName(model.slice(hash + 1), 'model (after #)') };
  }
  if (DEPLOYMENT.test(model)) return { deployment: model };
  if (MODEL.test(model)) return { model };
  throw invalid(
    `model: '${model}' names neither a deployment (accounts/{account}/deployments/{id}), a model on one (accounts/{a}/models/{m}#accounts/{a}/deployments/{d}), nor a model (accounts/{account}/models/{id})`,
  );
}

/** The target of a request from its deployment header and body model (either may be absent). */
export function requestTarget(
  header: string | undefined,
  model: string | undefined,
  path: string,
): Target {
  if (header !== undefined) {
    const name = deploymentName(header.trim(), `${DEPLOYMENT_HEADER} header`);
    if (model !== undefined) {
      const fromModel = modelTarget(model);
      if ('deployment' in fromModel && fromModel.deployment !== name)
        throw invalid(
          `model names ${fromModel.deployment} but the ${DEPLOYMENT_HEADER} header names ${name}: name one deployment`,
        );
    }
    return { deployment: name };
  }
  if (model !== undefined) return modelTarget(model);
  // OpenAI-style clients list and look up models on the bare base URL, naming no deployment
  if (path === MODELS_PATH) return { everyDeployment: true };
  if (path.startsWith(`${MODELS_PATH}/`)) {
    const id = decodeURIComponent(path.slice(MODELS_PATH.length + 1));
    return modelTarget(id);
  }
  throw invalid(
    `${path}: name the deployment with the header "${DEPLOYMENT_HEADER}: accounts/{account}/deployments/{id}" or the body's model`,
  );
}

/**
 * The deployment a target resolves to among those the caller may see. Another account's
 * deployment and a missing one get the same NOT_FOUND words.
 */
export function resolveTarget(
  target: { deployment: string } | { model: string },
  account: string,
  visible: (name: string) => RoutableDeployment | undefined,
  all: () => RoutableDeployment[],
): RoutableDeployment {
  if ('deployment' in target) {
    const d = target.deployment.startsWith(`accounts/${account}/`)
      ? visible(target.deployment)
      : undefined;
    if (!d) throw notFound(`${target.deployment} not found`);
    return d;
  }
  const serving = all().filter((d) => d.models.includes(target.model));
  const d = serving.find((x) => x.ready) ?? serving[0];
  if (!d)
    throw notFound(
      `no deployment of accounts/${account} serves ${target.model}: create one (POST /v1/accounts/${account}/deployments) or name a deployment (model: accounts/${account}/deployments/{id})`,
    );
  return d;
}

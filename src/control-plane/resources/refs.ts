/**
 * References from a request body to other resources (datasets, models, evaluators), checked
 * at create time so a job is never stored pointing at something that is not there. A
 * reference may be a bare id (the caller's account) or a full name; the catalog account is
 * readable by everyone, other accounts are "not found" exactly like a missing resource.
 */
import { CATALOG_ACCOUNT } from '../../catalog/bundled.js';
import { validateOutputModelId } from '../../checkpoints/promotion.js';
import type { DatasetKind } from '../../datasets/validate.js';
import type { Deps } from '../context.js';
import { ApiError, invalid, notFound, precondition } from '../http/errors.js';
import { parseRef, resourceName } from '../http/ids.js';
import type { RequestCtx } from '../http/router.js';
import { catalogDataset, catalogModel } from './catalog.js';
import type { Body } from './common.js';

async function readable(
  deps: Deps,
  ctx: RequestCtx,
  collection: 'datasets' | 'models' | 'evaluators',
  value: string,
  field: string,
  what: string,
): Promise<{ name: string; body: Body }> {
  const ref = parseRef(value, collection, ctx.account, field);
  const missing = () => notFound(`${what} '${value}' not found in account`);
  if (ref.account === CATALOG_ACCOUNT) {
    const found =
      collection === 'models'
        ? await catalogModel(ref.name)
        : collection === 'datasets'
          ? await catalogDataset(ref.name)
          : undefined;
    if (!found) throw missing();
    return { name: ref.name, body: found };
  }
  if (ref.account !== ctx.account) throw missing();
  const row = await deps.store.get<Body>(collection, ref.account, ref.id);
  if (!row) throw missing();
  return { name: row.name, body: row.body };
}

const KIND_LABEL: Record<DatasetKind, string> = { sft: 'SFT', dpo: 'DPO', rft: 'RFT' };

export interface DatasetRef {
  name: string;
  exampleCount: number;
}

/** A READY dataset of `kind`. */
export async function resolveDataset(
  deps: Deps,
  ctx: RequestCtx,
  value: string,
  field: string,
  kind: DatasetKind,
): Promise<DatasetRef> {
  const { name, body } = await readable(deps, ctx, 'datasets', value, field, 'Dataset');
  if (body.state !== 'READY')
    throw precondition(
      `${field}: dataset ${name} is ${String(body.state)}: upload its file (:upload) before using it in a job`,
    );
  if (body.kind !== kind)
    throw invalid(
      `${field}: dataset ${name} is a ${KIND_LABEL[body.kind as DatasetKind] ?? String(body.kind)} dataset; this job needs a ${KIND_LABEL[kind]} dataset`,
    );
  return { name, exampleCount: Number(body.exampleCount ?? 0) };
}

export interface ModelRef {
  name: string;
  kind: string;
  /** The catalog base model at the root of the chain (LoRA adapters point at their base). */
  root: string | null;
  /** A LoRA adapter's rank; null for full models. */
  adapterRank: number | null;
  contextLength: number | null;
}

export async function resolveModel(
  deps: Deps,
  ctx: RequestCtx,
  value: string,
  field: string,
): Promise<ModelRef> {
  const { name, body } = await readable(deps, ctx, 'models', value, field, 'Model');
  if (body.state !== undefined && body.state !== 'READY')
    throw precondition(`${field}: model ${name} is ${String(body.state)}, not READY`);
  const kind = String(body.kind ?? 'HF_BASE_MODEL');
  const peft = body.peftDetails as { baseModel?: string; r?: number } | null | undefined;
  const parent = peft?.baseModel ?? (body.baseModel as string | null | undefined) ?? null;
  const catalog = name.startsWith(`accounts/${CATALOG_ACCOUNT}/`)
    ? await catalogModel(name)
    : undefined;
  if (catalog)
    return { name, kind, root: name, adapterRank: null, contextLength: catalog.contextLength };
  const rootModel = parent ? await catalogModel(parent) : undefined;
  return {
    name,
    kind,
    root: rootModel?.name ?? null,
    adapterRank: kind === 'HF_PEFT_ADDON' ? (peft?.r ?? null) : null,
    contextLength: rootModel?.contextLength ?? null,
  };
}

export async function resolveEvaluator(
  deps: Deps,
  ctx: RequestCtx,
  value: string,
): Promise<string> {
  return (await readable(deps, ctx, 'evaluators', value, 'evaluator', 'Evaluator')).name;
}

/** The output model's full name: in the caller's account, a valid id, not taken yet. */
export async function resolveOutputModel(
  deps: Deps,
  ctx: RequestCtx,
  value: string,
): Promise<string> {
  const parts = value.split('/');
  const id =
    parts.length === 4 && parts[0] === 'accounts' && parts[2] === 'models' ? parts[3]! : value;
  if (parts.length === 4 && parts[1] !== ctx.account)
    throw invalid(`outputModel: '${value}' must be a model of accounts/${ctx.account}`);
  try {
    validateOutputModelId(id);
  } catch (err) {
    throw invalid(`outputModel: ${(err as Error).message}`);
  }
  if (await deps.store.get('models', ctx.account, id))
    throw new ApiError(
      'ALREADY_EXISTS',
      `outputModel: model ${resourceName(ctx.account, 'models', id)} already exists: choose another id`,
    );
  return resourceName(ctx.account, 'models', id);
}

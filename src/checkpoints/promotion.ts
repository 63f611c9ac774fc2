// Promotion: copy a promotable sampler checkpoint (a full HF export or a PEFT adapter) into
// `accounts/{account}/models/{outputModelId}/` and commit the model with
// `temper_model.json` (if-absent: the first promotion to an id wins).
//
// Order of business: the model id is validated before anything is read or written; the
// checkpoint must be committed, unexpired and promotable (an arc_v2 delta is not: it only
// makes sense next to the snapshot it was taken against); every file is checked against the
// export manifest's size and sha256 while it is copied; the model file is written last, and
// on any failure the files copied so far are deleted, so no partial model is left. Names
// are parsed segment by segment (no '..', no '/', no absolute keys): a name cannot point a
// copy outside `accounts/{account}/`. Concurrent promotions to one id are not supported:
// the commit picks one winner, but both may have written the files.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import {
  type CatalogEntry,
  CheckpointCatalog,
  formatCheckpointName,
  validateResourceId,
} from './catalog/catalog.js';
import { EXPORT_MANIFEST, PEFT_CONFIG } from './catalog/detect.js';
import { CheckpointError } from './dcp/errors.js';
import { type ObjectStore, ObjectStoreError } from './object-store/types.js';

/** The model's commit file (the same name the bundled models use). */
export const MODEL_FILE = 'temper_model.json';

export type ModelKind = 'HF_BASE_MODEL' | 'HF_PEFT_ADDON';

export interface PeftDetails {
  baseModel: string;
  r: number;
  loraAlpha: number | null;
  targetModules: string[];
}

export interface PromotedModel {
  name: string;
  state: 'READY';
  kind: ModelKind;
  peftDetails: PeftDetails | null;
  baseModel: string | null;
  createTime: string;
  /** The checkpoint it was promoted from. */
  sourceCheckpoint: string;
  files: { path: string; size: number; sha256: string }[];
}

export interface PromoteInput {
  /** accounts/{a}/rlorTrainerJobs/{job}/checkpoints/{id} */
  name: string;
  outputModelId: string;
  /** Base model resource name; required for a LoRA adapter unless its export records one. */
  baseModel?: string;
}

export interface PromoteOptions {
  now?: () => Date;
}

/** Validates a model id (1-63 of a-z0-9-, starting with a letter, not ending with '-'). */
export function validateOutputModelId(id: string): string {
  if (typeof id !== 'string' || id.length < 1 || id.length > 63)
    throw new CheckpointError(
      'invalid_argument',
      `outputModelId must be 1-63 characters (got ${typeof id === 'string' ? id.length : typeof id})`,
    );
  try {
    return validateResourceId(id, 'outputModelId');
  } catch (err) {
    throw new CheckpointError('invalid_argument', (err as Error).message);
  }
}

/** A model resource name, accounts/{account}/models/{model}: what a promoted model's base is. */
export const MODEL_RESOURCE_NAME =
  /^accounts\/[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\/models\/[a-z0-9][a-z0-9._-]{0,127}$/;

const adapterConfigFields = z.object({
  r: z.number().int().positive(),
  lora_alpha: z.number().optional(),
  target_modules: z.union([z.array(z.string()), z.string()]).optional(),
  base_model_name_or_path: z.string().nullable().optional(),
});

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function refuseNotPromotable(entry: CatalogEntry): never {
  const name = formatCheckpointName(entry.name);
  if (entry.checkpointType === 'INFERENCE_ARC_V2')
    throw new CheckpointError(
      'incompatible',
      `checkpoint ${name} is an arc_v2 delta (INFERENCE_ARC_V2) of a full-parameter run and cannot be promoted: it holds only the difference to an earlier snapshot. Save a base checkpoint (checkpointType 'base') and promote that`,
    );
  throw new CheckpointError(
    'incompatible',
    `checkpoint ${name} is a ${entry.checkpointType} train state without sampler weights and cannot be promoted: save it with promotable=true (a base sampler export) and promote that`,
  );
}

/** Promotes a checkpoint to a model; returns the model's metadata. */
export async function promoteCheckpoint(
  store: ObjectStore,
  input: PromoteInput,
  opts: PromoteOptions = {},
): Promise<PromotedModel> {
  // 1. Everything the caller gave is validated before any read or write.
  const modelId = validateOutputModelId(input.outputModelId);
  if (input.baseModel !== undefined && !MODEL_RESOURCE_NAME.test(input.baseModel))
    throw new CheckpointError(
      'invalid_argument',
      `baseModel '${input.baseModel}' must be a model resource name accounts/{account}/models/{model}`,
    );
  const catalog = new CheckpointCatalog(store, { now: opts.now });
  const entry = await catalog.get(input.name); // parses the name strictly
  if (!entry.promotable || !entry.export) refuseNotPromotable(entry);
  const manifest = entry.export;
  const modelName = `accounts/${entry.name.account}/models/${modelId}`;
  const modelKey = (p: string) => `${modelName}/${p}`;
  if (await store.stat(modelKey(MODEL_FILE)))
    throw new CheckpointError(
      'already_exists',
      `model ${modelName} already exists: choose another outputModelId`,
    );

  // 2. LoRA details come from the adapter's own config.
  const kind: ModelKind =
    entry.checkpointType === 'INFERENCE_LORA' ? 'HF_PEFT_ADDON' : 'HF_BASE_MODEL';
  const baseModel = input.baseModel ?? manifest.baseModel ?? null;
  let peftDetails: PeftDetails | null = null;
  if (kind === 'HF_PEFT_ADDON') {
    const raw = await store.get(`${entry.prefix}/${PEFT_CONFIG}`);
    let parsed: z.ZodSafeParseResult<z.infer<typeof adapterConfigFields>>;
    try {
      parsed = adapterConfigFields.safeParse(JSON.parse(raw.toString('utf8')));
    } catch {
      parsed = adapterConfigFields.safeParse(null);
    }
    if (!parsed.success)
      throw new CheckpointError(
        'corrupt',
        `${entry.prefix}/${PEFT_CONFIG} is not a valid PEFT adapter config`,
        {
          file: PEFT_CONFIG,
        },
      );
    const base = baseModel ?? parsed.data.base_model_name_or_path ?? null;
    if (!base)
      throw new CheckpointError(
        'invalid_argument',
        `checkpoint ${input.name} is a LoRA adapter and records no base model: pass baseModel (accounts/{account}/models/{model})`,
      );
    const targets = parsed.data.target_modules;
    peftDetails = {
      baseModel: base,
      r: parsed.data.r,
      loraAlpha: parsed.data.lora_alpha ?? null,
      targetModules: targets === undefined ? [] : Array.isArray(targets) ? targets : [targets],
    };
  }

  // 3. Copy (verified), then commit; undo the copies on failure.
  const copied: string[] = [];
  const files: PromotedModel['files'] = [];
  try {
    for (const f of [...manifest.files, { path: EXPORT_MANIFEST, size: -1, sha256: '' }]) {
      const src = `${entry.prefix}/${f.path}`;
      const body = await store.get(src);
      if (f.size >= 0) {
        if (body.length !== f.size)
          throw new CheckpointError(
            'corrupt',
            `${src} has ${body.length} bytes, expected ${f.size} (truncated?)`,
            {
              file: f.path,
            },
          );
        if (sha256(body) !== f.sha256)
          throw new CheckpointError('corrupt', `${src} fails its sha256 checksum`, {
            file: f.path,
          });
        files.push({ path: f.path, size: f.size, sha256: f.sha256 });
      }
      copied.push(modelKey(f.path));
      await store.put(modelKey(f.path), body);
    }
    const model: PromotedModel = {
      name: modelName,
      state: 'READY',
      kind,
      peftDetails,
      baseModel: kind === 'HF_PEFT_ADDON' ? (peftDetails?.baseModel ?? null) : baseModel,
      createTime: (opts.now?.() ?? new Date()).toISOString(),
      sourceCheckpoint: formatCheckpointName(entry.name),
      files,
    };
    try {
      await store.put(modelKey(MODEL_FILE), `${JSON.stringify(model, null, 2)}\n`, {
        ifAbsent: true,
        contentType: 'application/json',
      });
    } catch (err) {
      if (err instanceof ObjectStoreError && err.code === 'already_exists') {
        copied.length = 0; // the files now belong to the model that won
        throw new CheckpointError(
          'already_exists',
          `model ${modelName} was created by another promotion first`,
        );
      }
      throw err;
    }
    return model;
  } catch (err) {
    await Promise.all(copied.map((k) => store.delete(k).catch(() => undefined)));
    throw err;
  }
}

const promotedModelSchema = z.object({
  name: z.string(),
  state: z.literal('READY'),
  kind: z.enum(['HF_BASE_MODEL', 'HF_PEFT_ADDON']),
  peftDetails: z
    .object({
      baseModel: z.string(),
      r: z.number(),
      loraAlpha: z.number().nullable(),
      targetModules: z.array(z.string()),
    })
    .nullable(),
  baseModel: z.string().nullable(),
  createTime: z.iso.datetime(),
  sourceCheckpoint: z.string(),
  files: z.array(z.object({ path: z.string(), size: z.number(), sha256: z.string() })),
});

/** A promoted model's metadata, or null when there is no such model. */
export async function readModel(
  store: ObjectStore,
  account: string,
  modelId: string,
): Promise<PromotedModel | null> {
  const key = `accounts/${validateResourceId(account, 'account')}/models/${validateOutputModelId(modelId)}/${MODEL_FILE}`;
  if (!(await store.stat(key))) return null;
  let raw: unknown;
  try {
    raw = JSON.parse((await store.get(key)).toString('utf8'));
  } catch {
    raw = null;
  }
  const parsed = promotedModelSchema.safeParse(raw);
  if (!parsed.success)
    throw new CheckpointError('corrupt', `${store.url}/${key} is not a valid model file`, {
      file: MODEL_FILE,
    });
  return parsed.data;
}

/**
 * A LoRA model's files (a promoted PEFT export: its manifest, config and weights; not the
 * model's own record file) copied from the checkpoint store into a deployment's hot-load
 * bucket as the snapshot `identity`, ready for the gateway to load. Used by a deployment of a
 * LoRA model (deployments.ts) and by multi-LoRA addons (deployed-models.ts).
 */
import { openObjectStore } from '../../checkpoints/object-store/index.js';
import { MODEL_FILE } from '../../checkpoints/promotion.js';
import type { Deps } from '../context.js';

export async function copyAdapterFiles(
  deps: Deps,
  model: string,
  bucketUrl: string,
  identity: string,
): Promise<void> {
  const [from, to] = [await deps.checkpoints(), await openObjectStore(bucketUrl)];
  for (const f of await from.list(`${model}/`)) {
    const path = f.key.slice(model.length + 1);
    if (path === MODEL_FILE) continue;
    await to.put(`${identity}/${path}`, await from.getStream(f.key));
  }
}

/**
 * Evaluators stored the way uploads store them (src/evaluators/index.ts): each file as an
 * artifact under accounts/{a}/evaluators/{id}/files/, the row listing path, key and sha256.
 */
import { createHash } from 'node:crypto';
import type { ObjectStore } from '../../src/checkpoints/object-store/index.js';
import type { Store } from '../../src/control-plane/store/types.js';

export async function putEvaluator(
  deps: { store: Store; artifacts: ObjectStore },
  account: string,
  id: string,
  files: Record<string, string>,
  body: Record<string, unknown> = {},
): Promise<string> {
  const name = `accounts/${account}/evaluators/${id}`;
  const listed = [];
  for (const [path, text] of Object.entries(files)) {
    const key = `${name}/files/${path}`;
    await deps.artifacts.put(key, text);
    listed.push({
      path,
      key,
      sha256: createHash('sha256').update(text).digest('hex'),
      bytes: Buffer.byteLength(text),
    });
  }
  await deps.store.create('evaluators', account, id, { state: 'ACTIVE', files: listed, ...body });
  return name;
}

/**
 * Evaluators stored the way uploads store them (src/evaluators/index.ts): each file as an
 * artifact under accounts/{a}/evaluators/{id}/files/, the row listing path, key and sha256.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ObjectStore } from '../../src/checkpoints/object-store/index.js';
import type { Store } from '../../src/store/index.js';

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

/**
 * The wheelhouse scripts/setup.sh fills with the pins of scripts/python-envs/NAME.txt, from
 * which the tests build Python evaluator environments offline; throws, naming the command,
 * when it is missing.
 */
export function wheelhouse(name: string): string {
  const root =
    process.env.TEMPER_WHEELS_DIR ??
    (process.getuid?.() === 0
      ? '/var/cache/temper/wheels'
      : join(homedir(), '.cache/temper/wheels'));
  const dir = join(root, name);
  if (!existsSync(dir) || !readdirSync(dir).some((f) => f.endsWith('.whl')))
    throw new Error(`no wheels for '${name}' at ${dir}: run \`bash scripts/setup.sh\``);
  return dir;
}

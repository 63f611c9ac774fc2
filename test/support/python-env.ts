/**
 * Where scripts/python-env.sh put the pinned Python environment NAME (built from
 * scripts/python-envs/NAME.txt by `scripts/setup.sh`): the same content-hashed path, so a test
 * always runs the pins it was written against. Throws, naming the command, when it is missing.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

const REPO = join(import.meta.dirname, '..', '..');

export function pythonEnv(name: string): {
  venv: string;
  python: string;
  bin: (tool: string) => string;
} {
  const requirements = join(REPO, 'scripts', 'python-envs', `${name}.txt`);
  const hash = createHash('sha256').update(readFileSync(requirements)).digest('hex').slice(0, 12);
  const root = process.env.TEMPER_VENV_DIR ?? join(homedir(), '.cache', 'temper', 'venvs');
  const venv = join(root, `${name}-${hash}`);
  if (!existsSync(join(venv, '.complete')))
    throw new Error(
      `the Python environment '${name}' is not built at ${venv}: run \`bash scripts/python-env.sh ${name}\` (scripts/setup.sh builds them all)`,
    );
  return { venv, python: join(venv, 'bin', 'python'), bin: (tool) => join(venv, 'bin', tool) };
}

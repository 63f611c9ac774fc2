/**
 * Job work directories left behind by a worker that died hard are removed by the next worker
 * that opens an evaluator under the same root, and only those: a live worker's directories
 * (this process's, or another running process's) and foreign names are kept.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prepareWorkspace, sweepOrphanWorkspaces } from '../../src/evaluators/workspace.js';

const root = mkdtempSync(join(tmpdir(), 'temper-ws-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

describe('orphan evaluator workspaces', () => {
  it('removes the directories of dead workers and keeps the live ones', async () => {
    const dead = spawnSync('true').pid!;
    const live = spawn('sleep', ['30']);
    try {
      const liveId = `${live.pid}.${startTime(live.pid!)}`;
      const names = {
        deadWorker: `job-${dead}.12345-abc`,
        // The pid of a running process, but started at another time: a recycled pid.
        recycledPid: `job-${live.pid}.1-def`,
        liveWorker: `job-${liveId}-ghi`,
        foreign: 'notes',
      };
      for (const n of Object.values(names)) mkdirSync(join(root, n));

      const removed = await sweepOrphanWorkspaces(root);

      expect(removed.sort()).toEqual([names.deadWorker, names.recycledPid].sort());
      expect(readdirSync(root).sort()).toEqual([names.foreign, names.liveWorker].sort());
    } finally {
      live.kill();
    }
  });

  it('names a new workspace after this process, so the sweep keeps it while it runs', async () => {
    const ws = await prepareWorkspace({
      version: {
        language: 'javascript',
        files: [],
        entryFile: 'main.js',
        entryFunction: null,
        allowNetwork: false,
        secrets: [],
      },
      contents: [],
      root,
      uid: null,
      runner: { file: 'runner.mjs', source: '' },
    });
    expect(basename(ws.dir)).toMatch(
      new RegExp(`^job-${process.pid}\\.${startTime(process.pid)}-`),
    );
    expect(await sweepOrphanWorkspaces(root)).toEqual([]);
    await ws.remove();
  });
});

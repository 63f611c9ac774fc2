// No process outlives a `temper up` stack: with a deployment replica and a trainer pod
// running, a SIGKILL of the stack's top process (no cleanup runs) still takes the Temporal dev
// server, the replica and the pod with it (parent-death signal); and a replica stops promptly
// on SIGTERM even with a request in flight (a client that never finishes its body).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, startUp, temper, type UpProcess } from './support.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
const DATA = 'catalog/accounts/temper/datasets/sure-answers-sft.jsonl';

let home: string;
let up: UpProcess | undefined;

afterAll(async () => {
  if (up?.child.exitCode === null) up.child.kill('SIGKILL');
  for (const pid of stackProcesses()) process.kill(pid, 'SIGKILL');
  if (home) await rm(home, { recursive: true, force: true });
});

/** Live processes (not zombies) carrying this stack's TEMPER_HOME, found through /proc. */
function stackProcesses(): number[] {
  if (!home) return [];
  const marker = `TEMPER_HOME=${home}\0`;
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (`${readFileSync(`/proc/${entry}/environ`, 'latin1')}\0`.includes(marker))
        if (alive(Number(entry))) found.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/** The TCP port `pid` listens on (its socket inodes matched against /proc/net/tcp). */
function listeningPort(pid: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = readlinkSync(`/proc/${pid}/fd/${fd}`).match(/^socket:\[(\d+)\]$/);
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // local_address is f[1] (ip:port in hex), st is f[3] (0A = LISTEN), inode is f[9].
    if (f[3] === '0A' && inodes.has(f[9] ?? '')) return Number.parseInt(f[1]!.split(':')[1]!, 16);
  }
  return 0;
}

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'latin1');

async function until(probe: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

async function api(path: string): Promise<Record<string, unknown>> {
  const creds = JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8'));
  const res = await fetch(`${creds.apiUrl}${path}`, {
    headers: { authorization: `Bearer ${creds.apiKey}` },
  });
  return (await res.json()) as Record<string, unknown>;
}

/**
 * Starts a request to `port` and never finishes its body: the server holds an active request
 * (as with a stalled client or a long generation), which server.close() alone waits for.
 */
function stallRequest(port: number): Promise<() => void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(
        'POST /generate HTTP/1.1\r\nHost: replica\r\nContent-Type: application/json\r\n' +
          'Content-Length: 100000\r\n\r\n{"prompt":',
      );
      // Let the server parse the headers and start the request before the signal.
      setTimeout(() => resolve(() => socket.destroy()), 300);
    });
    socket.on('error', () => {});
    socket.once('error', reject);
  });
}

describe('a killed temper up stack', () => {
  it('leaves no process behind, and its replicas stop promptly on SIGTERM', async () => {
    home = await mkdtemp(join(tmpdir(), 'temper-death-'));
    const env = { TEMPER_HOME: home };
    up = await startUp(home);

    // Two replicas (one to SIGTERM, one to outlive the stack's SIGKILL) and a job mid-training.
    for (const id of ['d1', 'd2']) {
      const dep = await temper(['deployment', 'create', BASE, '--deployment-id', id], env);
      expect(dep.code, dep.stderr).toBe(0);
    }
    expect((await temper(['dataset', 'create', 'answers', DATA], env)).code).toBe(0);
    const job = await temper(
      ['create', 'sftj', '--base-model', BASE, '--dataset', 'answers', '--job-id', 'long'].concat([
        '--lora-rank',
        '0',
        '--epochs',
        '50',
        '--batch-size',
        '256',
      ]),
      env,
    );
    expect(job.code, job.stderr).toBe(0);
    expect(
      await until(async () => {
        const body = await api('/v1/accounts/default/supervisedFineTuningJobs/long');
        return ((body.jobProgress as { step?: number } | undefined)?.step ?? 0) > 0;
      }, 60_000),
    ).toBe(true);

    const procs = stackProcesses();
    const replicas = procs.filter((p) => cmdline(p).includes('replica/main'));
    const pods = procs.filter((p) => cmdline(p).includes('trainer\0serve'));
    const temporal = procs.filter((p) => cmdline(p).includes('--db-filename'));
    expect(replicas.length).toBe(2);
    expect(pods.length).toBe(1);
    expect(temporal.length).toBe(1);

    // SIGTERM to a replica with a request in flight: it ends within a few seconds (it waited
    // for the request, minutes, before).
    const victim = replicas[0]!;
    const port = listeningPort(victim);
    expect(port).toBeGreaterThan(0);
    const release = await stallRequest(port);
    const t0 = performance.now();
    process.kill(victim, 'SIGTERM');
    const stopped = await until(async () => !alive(victim), 5_000);
    console.log(`replica stopped ${Math.round(performance.now() - t0)} ms after SIGTERM`);
    release();
    expect(stopped).toBe(true);

    // SIGKILL the top process: nothing of the stack may remain a few seconds later.
    up.child.kill('SIGKILL');
    await up.exited;
    const gone = await until(async () => stackProcesses().length === 0, 5_000);
    expect(gone ? [] : stackProcesses().map((p) => cmdline(p).replaceAll('\0', ' '))).toEqual([]);
  }, 240_000);
});

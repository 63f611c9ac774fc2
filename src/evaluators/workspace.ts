/**
 * A job's private copy of one evaluator version: every file fetched from the artifacts
 * store, checked against the sha256 recorded at upload, written into a fresh 0700 directory
 * owned by the sandbox's uid (nobody else on the machine can read it), with the runner beside
 * it; removed when the job's evaluator closes. A mismatch or a missing file leaves nothing.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { ObjectStore } from '../checkpoints/object-store/index.js';
import type { ResolvedVersion } from './version.js';

/** The recorded sha256 and the fetched bytes differ: the evaluator changed after upload. */
export class EvaluatorIntegrityError extends Error {
  override readonly name = 'EvaluatorIntegrityError';
}

export interface Workspace {
  /** The job's private directory (0700). */
  dir: string;
  /** The evaluator's files (mounted read-only at /evaluator). */
  codeDir: string;
  /** The runner script's folder (mounted read-only at /runner). */
  runnerDir: string;
  remove(): Promise<void>;
}

export interface WorkspaceSpec {
  version: ResolvedVersion;
  /** The files' bytes, verified (fetchVerifiedFiles), in the order of version.files. */
  contents: Buffer[];
  root: string;
  /** Owner of the private directory: the sandbox uid (worker is root), or null (the worker). */
  uid: number | null;
  runner: { file: string; source: string };
  /** Rewrites a file's text before it is written (TypeScript → JavaScript). */
  transform?: (path: string, text: string) => Promise<{ path: string; text: string } | null>;
}

async function fetchVerified(
  name: string,
  artifacts: ObjectStore,
  f: ResolvedVersion['files'][number],
) {
  let bytes: Buffer;
  try {
    bytes = await artifacts.get(f.key);
  } catch (error) {
    throw new Error(
      `evaluator ${name}: its file ${f.path} is missing from the artifacts store (${(error as Error).message}); upload the evaluator again`,
    );
  }
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== f.sha256)
    throw new EvaluatorIntegrityError(
      `evaluator ${name}: ${f.path} does not match the sha256 recorded at upload (recorded ${f.sha256.slice(0, 12)}…, stored file ${actual.slice(0, 12)}…); it was changed after upload, so it is not run: upload the evaluator again`,
    );
  return bytes;
}

/** Every file of the version, fetched and checked against its recorded sha256. */
export function fetchVerifiedFiles(
  name: string,
  version: ResolvedVersion,
  artifacts: ObjectStore,
): Promise<Buffer[]> {
  return Promise.all(version.files.map((f) => fetchVerified(name, artifacts, f)));
}

/** The sandbox's uid must be able to pass through every folder above its work directory. */
async function checkReachable(root: string): Promise<void> {
  for (let dir = resolve(root); dir !== dirname(dir); dir = dirname(dir)) {
    const st = await stat(dir);
    if ((st.mode & 0o001) === 0)
      throw new Error(
        `the evaluator work directory ${root} is out of the sandbox user's reach: ${dir} is not searchable by others (chmod o+x it, or set TEMPER_EVALUATOR_WORK_DIR elsewhere)`,
      );
  }
}

/*
 * The sandbox runs as another uid and must read what is written here, but temper processes
 * run with umask 077 (src/util/private-files.ts), which masks the mode given at creation:
 * modes are set explicitly after creating (chmod is not masked). The job directory itself
 * stays 0700 and owned by the sandbox uid, so nobody else gets in.
 */
async function readableDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
  await chmod(path, 0o755);
}

async function readableFile(path: string, data: string | Buffer): Promise<void> {
  await writeFile(path, data);
  await chmod(path, 0o644);
}

/** `from` (exclusive) down to `to` (inclusive): the folders a nested file needs. */
function dirsBetween(from: string, to: string): string[] {
  const out: string[] = [];
  for (let d = to; d !== from && d.startsWith(from); d = dirname(d)) out.unshift(d);
  return out;
}

/*
 * A worker that dies hard (SIGKILL, OOM, power) never runs remove(), and its job directories
 * would stay forever. Each directory's name carries its owner process's identity: the pid and
 * the process's start time (field 22 of /proc/<pid>/stat), so a recycled pid, or pid 1 of a
 * restarted container, is not mistaken for the owner. The name is the evaluator's to see but not
 * to change: the root is 0711 and owned by the worker. Several workers may share one root; each
 * removes only directories whose owner is gone.
 */
const WORKSPACE_NAME = /^job-(\d+)\.(\d+)-/;

function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces; fields after it are plain.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

const ownIdentity = `${process.pid}.${processStartTime(process.pid) ?? 0}`;

function ownerAlive(name: string): boolean {
  const m = WORKSPACE_NAME.exec(name);
  if (!m) return true; // not ours to judge: leave it
  return processStartTime(Number(m[1])) === m[2];
}

/** Removes the job directories under `root` whose owning worker process no longer runs. */
export async function sweepOrphanWorkspaces(root: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return [];
  }
  const orphans = names.filter((n) => !ownerAlive(n));
  await Promise.all(orphans.map((n) => rm(join(root, n), { recursive: true, force: true })));
  return orphans;
}

/** One sweep per root per process, before its first workspace there. */
const swept = new Map<string, Promise<string[]>>();

export async function prepareWorkspace(spec: WorkspaceSpec): Promise<Workspace> {
  const { contents } = spec;
  await mkdir(spec.root, { recursive: true, mode: 0o711 });
  await chmod(spec.root, 0o711);
  if (spec.uid !== null) await checkReachable(spec.root);
  if (!swept.has(spec.root)) swept.set(spec.root, sweepOrphanWorkspaces(spec.root));
  await swept.get(spec.root);
  const dir = await mkdtemp(join(spec.root, `job-${ownIdentity}-`));
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    await chmod(dir, 0o700);
    if (spec.uid !== null) await chown(dir, spec.uid, spec.uid);
    const codeDir = join(dir, 'code');
    const runnerDir = join(dir, 'runner');
    await readableDir(codeDir);
    await readableDir(runnerDir);
    for (const [i, f] of spec.version.files.entries()) {
      const target = join(codeDir, f.path);
      for (const d of dirsBetween(codeDir, dirname(target))) await readableDir(d);
      await readableFile(target, contents[i]!);
      const rewritten = await spec.transform?.(f.path, contents[i]!.toString('utf8'));
      if (rewritten) await readableFile(join(codeDir, rewritten.path), rewritten.text);
    }
    await readableFile(join(runnerDir, spec.runner.file), spec.runner.source);
    return { dir, codeDir, runnerDir, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

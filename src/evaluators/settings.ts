/**
 * The operator's limits for evaluator sandboxes: one schema, with defaults and ranges, read
 * once where the worker starts (TEMPER_EVALUATOR_* environment variables). Evaluators cannot
 * raise them; a job's rolloutTimeout is the per-rollout wall time (capped by `maxWallSeconds`).
 */
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

export const sandboxSettingsSchema = z.strictObject({
  /** Address space per sandboxed process (RLIMIT_AS), MiB. */
  memoryMb: z
    .number()
    .int()
    .min(256, 'must be at least 256 MiB')
    .max(1 << 20)
    .default(2048),
  /** CPU seconds one rollout may use (threads included); the parent kills past it. */
  cpuSeconds: z.number().min(1).max(3600).default(30),
  /** Processes and threads the sandbox may have at once (RLIMIT_NPROC; stops fork bombs). */
  maxProcesses: z.number().int().min(4).max(4096).default(64),
  /** Largest file the evaluator may write (RLIMIT_FSIZE) and size of its private /tmp, MiB. */
  scratchMb: z
    .number()
    .int()
    .min(1)
    .max(1 << 16)
    .default(64),
  /** Upper bound on a job's per-rollout wall time, seconds. */
  maxWallSeconds: z.number().min(1).max(3600).default(600),
  /** Time an evaluator process has to load its code (imports included), seconds. */
  startSeconds: z.number().min(1).max(3600).default(60),
  /** Largest result line an evaluator may write, bytes. */
  maxResultBytes: z
    .number()
    .int()
    .min(1024)
    .max(64 << 20)
    .default(1 << 20),
  /**
   * First uid/gid of the range sandboxes run as when the worker is root (each live process
   * gets its own, so per-uid limits are per sandbox). Ignored when the worker is not root:
   * then the sandbox maps the worker's uid to `nobody` in a user namespace.
   */
  uidBase: z
    .number()
    .int()
    .min(1000)
    .max(2 ** 31 - 70_000)
    .default(1_100_000),
  /** Where per-job work directories are made (0700, removed after the job). */
  workDir: z
    .string()
    .min(1)
    .default(
      join(tmpdir(), isRoot ? 'temper-evaluators' : `temper-evaluators-${process.getuid?.() ?? 0}`),
    ),
  /**
   * Where Python evaluator environments are cached, one per requirements.txt hash. Must be
   * readable by the sandbox uid, hence not under root's home when the worker is root.
   */
  envDir: z
    .string()
    .min(1)
    .default(
      isRoot ? '/var/cache/temper/evaluator-envs' : join(homedir(), '.cache/temper/evaluator-envs'),
    ),
  /** The interpreter Python evaluator environments are made from (must be sandbox-readable). */
  python: z.string().min(1).default('/usr/bin/python3'),
  /**
   * Installed into every Python evaluator environment before its own requirements: what
   * eval-protocol evaluators import (their requirements.txt may be empty, as on the hosted
   * service).
   */
  basePackages: z.array(z.string().min(1)).default(['eval-protocol==0.3.33']),
  /** Extra `pip install` arguments for environment builds (a mirror, --no-index --find-links). */
  pipArgs: z.array(z.string()).default([]),
  /** Time an environment build may take, seconds. */
  buildSeconds: z.number().min(10).max(7200).default(900),
});

export type SandboxSettings = z.output<typeof sandboxSettingsSchema>;
export type SandboxSettingsInput = z.input<typeof sandboxSettingsSchema>;

/** Validated settings; an Error naming the field when one is out of range. */
export function sandboxSettings(input: SandboxSettingsInput = {}): SandboxSettings {
  const parsed = sandboxSettingsSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(
      `invalid evaluator sandbox settings: ${issue.path.join('.')}: ${issue.message}`,
    );
  }
  return parsed.data;
}

const ENV: Record<string, { key: keyof SandboxSettings; kind: 'number' | 'string' | 'list' }> = {
  TEMPER_EVALUATOR_MEMORY_MB: { key: 'memoryMb', kind: 'number' },
  TEMPER_EVALUATOR_CPU_SECONDS: { key: 'cpuSeconds', kind: 'number' },
  TEMPER_EVALUATOR_MAX_PROCESSES: { key: 'maxProcesses', kind: 'number' },
  TEMPER_EVALUATOR_SCRATCH_MB: { key: 'scratchMb', kind: 'number' },
  TEMPER_EVALUATOR_MAX_WALL_SECONDS: { key: 'maxWallSeconds', kind: 'number' },
  TEMPER_EVALUATOR_START_SECONDS: { key: 'startSeconds', kind: 'number' },
  TEMPER_EVALUATOR_UID_BASE: { key: 'uidBase', kind: 'number' },
  TEMPER_EVALUATOR_WORK_DIR: { key: 'workDir', kind: 'string' },
  TEMPER_EVALUATOR_ENV_DIR: { key: 'envDir', kind: 'string' },
  TEMPER_EVALUATOR_PYTHON: { key: 'python', kind: 'string' },
  TEMPER_EVALUATOR_PIP_ARGS: { key: 'pipArgs', kind: 'list' },
};

/** Settings from TEMPER_EVALUATOR_* variables (unset ones take their defaults). */
export function sandboxSettingsFromEnv(
  env: Record<string, string | undefined> = process.env,
): SandboxSettings {
  const input: Record<string, unknown> = {};
  for (const [name, { key, kind }] of Object.entries(ENV)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    input[key] =
      kind === 'number' ? Number(raw) : kind === 'list' ? raw.split(/\s+/).filter(Boolean) : raw;
  }
  return sandboxSettings(input as SandboxSettingsInput);
}

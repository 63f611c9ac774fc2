/**
 * One long-lived sandboxed evaluator process and the rollouts queued for it. Requests go down
 * its stdin as JSON lines, as many as are waiting (batched, so warm calls cost a line each);
 * it answers them in order. Because it works on one rollout at a time, the parent knows which
 * rollout is running and holds it to its limits itself: wall time from when it started, CPU
 * time read from /proc. A rollout past a limit gets the whole sandbox SIGKILLed (the runner is
 * pid 1 of its namespace, so every process it started dies with it); that rollout is reported
 * invalid with the reason, the rollouts queued behind it go to a fresh process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { SandboxCommand } from './sandbox.js';

export interface RolloutInput {
  messages: unknown[];
  completion: string;
  groundTruth: unknown;
  row: Record<string, unknown>;
}

export interface Evaluation {
  score: number;
  valid: boolean;
  reason: string;
}

export interface ProcessLimits {
  wallMs: number;
  cpuSeconds: number;
  /** RLIMIT_CPU of the process: it is recycled between rollouts once half of it is used. */
  lifetimeCpuSeconds: number;
  startMs: number;
  memoryMb: number;
  maxProcesses: number;
  maxResultBytes: number;
}

export interface ProcessSpec {
  /** accounts/{a}/evaluators/{id}: named in load failures. */
  name: string;
  /** A fresh command line for each (re)start. */
  command: () => SandboxCommand;
  /**
   * Environment variables for the evaluator itself (the account's secrets). They are the
   * runner's first stdin line, set before the evaluator loads, never the launch chain's
   * environment: a variable such as LD_PRELOAD must not reach prlimit or setpriv, which run
   * as root when the worker does.
   */
  secrets: Record<string, string>;
  limits: ProcessLimits;
  allowNetwork: boolean;
  log: Logger;
}

interface Pending {
  id: number;
  rollout: RolloutInput;
  resolve: (e: Evaluation) => void;
}

interface Live {
  proc: ChildProcess;
  stdin: Writable;
  /** Host pid of the runner (pid 1 of the sandbox), from bwrap's info fd. */
  runnerPid: number | null;
  stderrTail: string;
  /** Why the parent killed it (the reason the running rollout gets). */
  killReason: string | null;
  ready: boolean;
  /** Asked to exit (recycled after heavy CPU use): takes no more requests. */
  retiring: boolean;
  exited: Promise<void>;
  /** CPU seconds of the runner when the running rollout started (null: not read yet). */
  cpuBase: number | null;
  cpuNow: number;
  headStart: number;
  /** Largest address space the runner was seen with (a crash near the limit is the limit). */
  vsizePeak: number;
}

const resultSchema = z.union([
  z.number(),
  z.object({ score: z.number(), reason: z.string().optional(), valid: z.boolean().optional() }),
]);

const messageSchema = z.union([
  z.object({ ready: z.literal(true) }),
  z.object({ fatal: z.string() }),
  z.object({
    id: z.number(),
    ok: z.boolean(),
    value: z.unknown().optional(),
    error: z.string().optional(),
    kind: z.string().optional(),
    /** Processes still alive in the sandbox once the rollout returned (counted by the runner). */
    strays: z.number().optional(),
  }),
]);

/** The result a runner sent, mapped exactly as evaluators have always been scored. */
export function toEvaluation(value: unknown): Evaluation {
  const parsed = resultSchema.safeParse(value);
  if (!parsed.success) return { score: 0, valid: false, reason: 'evaluator returned no score' };
  const r = typeof parsed.data === 'number' ? { score: parsed.data } : parsed.data;
  if (!(r.score >= 0 && r.score <= 1))
    return { score: 0, valid: false, reason: `score ${r.score} is outside [0, 1]` };
  return { score: r.score, valid: r.valid ?? true, reason: ('reason' in r && r.reason) || '' };
}

type Message = z.infer<typeof messageSchema>;

/** The common line, checked without zod (one per rollout: the hot path of warm calls). */
function isResultLine(raw: unknown): raw is Extract<Message, { id: number }> {
  if (typeof raw !== 'object' || raw === null) return false;
  const m = raw as Record<string, unknown>;
  return (
    typeof m.id === 'number' &&
    typeof m.ok === 'boolean' &&
    (m.error === undefined || typeof m.error === 'string') &&
    (m.kind === undefined || typeof m.kind === 'string') &&
    (m.strays === undefined || typeof m.strays === 'number')
  );
}

/** Runners send non-finite numbers as {"$num":"NaN"} (JSON has no NaN). */
function revive(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    if (typeof o.$num === 'string' && Object.keys(o).length === 1) return Number(o.$num);
  }
  return value;
}

const CLK_TCK = 100;
const POLL_MS = 200;
const MAX_IN_FLIGHT = 256;
const STDERR_TAIL = 8192;

/** The pids a process's threads started (and, for pid 1 of a namespace, every orphan). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) for (const c of text.split(' ')) out.push(Number(c));
    }
  } catch {}
  return out;
}

/** utime+stime+cutime+cstime of a process, seconds (threads and reaped children included). */
function ownCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime..cstime are fields 14..17.
    return [11, 12, 13, 14].reduce((s, i) => s + Number(fields[i]), 0) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Virtual memory size of a process, bytes (0 when gone). */
function vsizeOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[20]);
  } catch {
    return 0;
  }
}

/** CPU seconds of the whole sandbox: the runner and every process alive under it. */
function sandboxCpuSeconds(runner: number): number {
  let total = 0;
  const todo = [runner];
  for (let n = 0; todo.length > 0 && n < 10_000; n++) {
    const pid = todo.pop()!;
    total += ownCpuSeconds(pid);
    todo.push(...childPids(pid));
  }
  return total;
}

export class EvaluatorProcess {
  private queue: Pending[] = [];
  private inflight: Pending[] = [];
  private live: Live | null = null;
  private starting: Promise<void> | null = null;
  private nextId = 1;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly spec: ProcessSpec) {}

  private reasons() {
    const l = this.spec.limits;
    return {
      wall: `evaluator exceeded its wall-time limit of ${l.wallMs / 1000} s`,
      cpu: `evaluator exceeded its CPU time limit of ${l.cpuSeconds} s`,
      memory: `evaluator exceeded its memory limit of ${l.memoryMb} MiB`,
      processes: `evaluator tried to start more processes than its limit of ${l.maxProcesses}`,
      output: `evaluator wrote a result larger than ${l.maxResultBytes} bytes`,
    };
  }

  /** Starts the process and waits until the evaluator is loaded (its load error otherwise). */
  start(): Promise<void> {
    if (this.live?.ready) return Promise.resolve();
    this.starting ??= this.spawnWithRetries().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  /**
   * A load that failed on an import race between threads inside the evaluator's packages (a
   * deadlock or a partially initialised module: litellm 1.105, which eval-protocol 0.3.33
   * imports, does this now and then) is tried again in a fresh process, twice at most.
   */
  private async spawnWithRetries(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.spawnReady();
      } catch (error) {
        const racy = /_DeadlockError|deadlock detected by _ModuleLock|partially initialized module/;
        if (attempt >= 3 || this.closed || !racy.test((error as Error).message)) throw error;
        this.spec.log.warn(
          { evaluator: this.spec.name, error: (error as Error).message },
          'evaluator import raced; loading it again',
        );
      }
    }
  }

  evaluate(rollout: RolloutInput): Promise<Evaluation> {
    if (this.closed)
      return Promise.resolve({ score: 0, valid: false, reason: 'evaluator was closed' });
    return new Promise<Evaluation>((resolve) => {
      this.queue.push({ id: this.nextId++, rollout, resolve });
      this.pump();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0))
      p.resolve({ score: 0, valid: false, reason: 'evaluator was closed' });
    const live = this.live;
    if (!live) return;
    live.stdin.end();
    const grace = setTimeout(() => this.kill(live, 'evaluator was closed'), 2_000);
    await live.exited;
    clearTimeout(grace);
  }

  private spawnReady(): Promise<void> {
    const cmd = this.spec.command();
    const proc = spawn(cmd.file, cmd.args, {
      env: cmd.env,
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let exitedResolve!: () => void;
    const live: Live = {
      proc,
      stdin: proc.stdin!,
      runnerPid: null,
      stderrTail: '',
      killReason: null,
      ready: false,
      retiring: false,
      exited: new Promise<void>((r) => {
        exitedResolve = r;
      }),
      cpuBase: null,
      cpuNow: 0,
      headStart: 0,
      vsizePeak: 0,
    };
    this.live = live;
    // A write to a process that just died is reported by its exit, not here.
    live.stdin.on('error', () => undefined);
    live.stdin.write(`${JSON.stringify({ env: this.spec.secrets })}\n`);
    let info = '';
    (proc.stdio[3] as Readable).on('data', (chunk: Buffer) => {
      info += chunk.toString();
      const m = /"child-pid"\s*:\s*(\d+)/.exec(info);
      if (m) live.runnerPid = Number(m[1]);
    });
    proc.stderr!.on('data', (chunk: Buffer) => {
      live.stderrTail = (live.stderrTail + chunk.toString()).slice(-STDERR_TAIL);
    });
    return new Promise<void>((resolve, reject) => {
      const startTimer = setTimeout(
        () => this.kill(live, `did not load within ${this.spec.limits.startMs / 1000} s`),
        this.spec.limits.startMs,
      );
      let buffered = '';
      proc.stdout!.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let nl = buffered.indexOf('\n');
        while (nl >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          this.onLine(
            live,
            line,
            () => {
              clearTimeout(startTimer);
              resolve();
            },
            (error) => {
              clearTimeout(startTimer);
              reject(error);
            },
          );
          nl = buffered.indexOf('\n');
        }
        if (buffered.length > this.spec.limits.maxResultBytes)
          this.kill(live, this.reasons().output);
      });
      proc.on('error', (error) => {
        clearTimeout(startTimer);
        reject(new Error(`evaluator ${this.spec.name} could not be started: ${error.message}`));
      });
      proc.on('close', (code, signal) => {
        clearTimeout(startTimer);
        const wasReady = live.ready;
        const reason = live.killReason ?? this.classifyExit(live, code, signal);
        if (this.live === live) this.live = null;
        this.stopTimer();
        exitedResolve();
        if (!wasReady) {
          reject(new Error(`evaluator ${this.spec.name} failed to load: ${reason}`));
          return;
        }
        this.onExit(reason);
      });
    });
  }

  private onLine(live: Live, line: string, ready: () => void, fail: (e: Error) => void) {
    // Once killed, what else it wrote is not trusted: those rollouts go to a fresh sandbox.
    if (!line.trim() || live.killReason !== null) return;
    let message: z.infer<typeof messageSchema>;
    try {
      // The reviver only where a non-finite number was sent: it costs on every key.
      const raw: unknown = line.includes('"$num"') ? JSON.parse(line, revive) : JSON.parse(line);
      message = isResultLine(raw) ? raw : messageSchema.parse(raw);
    } catch {
      this.spec.log.warn(
        { evaluator: this.spec.name },
        'evaluator wrote a line that is not a result',
      );
      return;
    }
    if ('ready' in message) {
      if (!live.ready) {
        live.ready = true;
        ready();
        this.pump();
      }
      return;
    }
    if ('fatal' in message) {
      if (!live.ready) {
        live.killReason = message.fatal;
        fail(new Error(`evaluator ${this.spec.name} failed to load: ${message.fatal}`));
      }
      return;
    }
    const at = this.inflight.findIndex((p) => p.id === message.id);
    if (at < 0) return;
    const [p] = this.inflight.splice(at, 1);
    let evaluation: Evaluation;
    let restart = false;
    if (message.ok) evaluation = toEvaluation(message.value);
    else {
      const kind = message.kind ?? 'error';
      const limits = this.reasons();
      let reason = message.error || 'evaluator failed';
      if (kind === 'memory') reason = limits.memory;
      else if (kind === 'processes') reason = limits.processes;
      else if (kind === 'network' && !this.spec.allowNetwork)
        reason = `${reason} (the evaluator has no network access: it does not declare allowNetwork)`;
      restart = kind === 'memory' || kind === 'processes';
      evaluation = { score: 0, valid: false, reason };
    }
    // No process may outlive the rollout that started it (a fork bomb's survivors, a daemon
    // that would watch later rollouts): the rollout is invalid and the sandbox replaced. The
    // runner counts them as the rollout ends (the parent cannot: the runner is already on the
    // next rollout when this line arrives); the parent sweeps again when a batch is done.
    const strays = message.strays ?? 0;
    if (strays > 0 && !restart) {
      evaluation = {
        score: 0,
        valid: false,
        reason: `evaluator left ${strays} process${strays === 1 ? '' : 'es'} running after it returned`,
      };
      restart = true;
    }
    p!.resolve(evaluation);
    if (at === 0) {
      live.headStart = Date.now();
      live.cpuBase = null;
    }
    if (restart) {
      // Whatever it started or half-allocated goes with the sandbox; the next rollout gets a
      // clean one.
      this.kill(live, null);
      return;
    }
    if (this.inflight.length === 0 && this.queue.length === 0) {
      if (live.runnerPid !== null && childPids(live.runnerPid).length > 0) {
        this.kill(live, null);
        return;
      }
      if (live.cpuNow > this.spec.limits.lifetimeCpuSeconds / 2) {
        live.retiring = true;
        live.stdin.end();
        return;
      }
    }
    this.pump();
  }

  private classifyExit(live: Live, code: number | null, signal: NodeJS.Signals | null): string {
    const limits = this.reasons();
    const tail = live.stderrTail;
    if (signal === 'SIGXCPU') return limits.cpu;
    if (
      /heap out of memory|Reached heap limit|MemoryError|Cannot allocate memory|bad_alloc|out of memory|allocation failed/i.test(
        tail,
      )
    )
      return limits.memory;
    if (/Resource temporarily unavailable|EAGAIN/.test(tail)) return limits.processes;
    // Runtimes that cannot map more memory often just crash (SIGSEGV/SIGABRT, no message).
    const crashed = signal !== null || (code !== null && code >= 128);
    if (crashed && live.vsizePeak > 0.75 * this.spec.limits.memoryMb * 1024 * 1024)
      return limits.memory;
    const lastLine = tail.trim().split('\n').at(-1)?.slice(0, 500) ?? '';
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    return `evaluator process ${how}${lastLine ? `: ${lastLine}` : ''}`;
  }

  /** The running rollout is reported with `reason`; the ones behind it go to a new process. */
  private onExit(reason: string) {
    const [head, ...rest] = this.inflight.splice(0);
    if (head && reason) head.resolve({ score: 0, valid: false, reason });
    else if (head) rest.unshift(head);
    this.queue.unshift(...rest);
    if (this.queue.length > 0 && !this.closed) this.pump();
  }

  private kill(live: Live, reason: string | null) {
    if (live.killReason === null) live.killReason = reason ?? '';
    const pid = live.proc.pid;
    try {
      if (pid) process.kill(-pid, 'SIGKILL');
    } catch {}
    try {
      if (live.runnerPid) process.kill(live.runnerPid, 'SIGKILL');
    } catch {}
  }

  private pump() {
    if (this.closed) return;
    const live = this.live;
    if (!live) {
      if (this.queue.length > 0 && !this.starting)
        this.start().catch((error: Error) => {
          for (const p of this.queue.splice(0))
            p.resolve({ score: 0, valid: false, reason: error.message });
        });
      return;
    }
    // Starting (its ready line pumps) or retiring (its exit pumps).
    if (!live.ready || live.retiring) return;
    if (this.inflight.length === 0 && this.queue.length > 0) {
      live.headStart = Date.now();
      live.cpuBase = null;
    }
    let out = '';
    while (this.queue.length > 0 && this.inflight.length < MAX_IN_FLIGHT) {
      const p = this.queue.shift()!;
      this.inflight.push(p);
      out += `${JSON.stringify({ id: p.id, rollout: p.rollout })}\n`;
    }
    if (out) live.stdin.write(out);
    if (this.inflight.length > 0) this.startTimer();
  }

  private startTimer() {
    if (this.timer) return;
    this.timer = setInterval(() => this.check(), POLL_MS);
    this.timer.unref();
  }

  private stopTimer() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Holds the running rollout to its wall and CPU limits (CPU of all its processes). */
  private check() {
    const live = this.live;
    if (!live || this.inflight.length === 0) {
      this.stopTimer();
      return;
    }
    const limits = this.spec.limits;
    if (Date.now() - live.headStart > limits.wallMs) {
      this.kill(live, this.reasons().wall);
      return;
    }
    if (live.runnerPid === null) return;
    const cpu = sandboxCpuSeconds(live.runnerPid);
    live.vsizePeak = Math.max(live.vsizePeak, vsizeOf(live.runnerPid));
    live.cpuNow = cpu;
    if (live.cpuBase === null) live.cpuBase = cpu;
    else if (cpu - live.cpuBase > limits.cpuSeconds) this.kill(live, this.reasons().cpu);
  }
}

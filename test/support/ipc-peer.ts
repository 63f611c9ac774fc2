/**
 * A helper process driven one command at a time over Node's IPC channel, for tests and
 * benchmarks that need several real processes (collective ranks, for one). The parent side
 * is IpcPeer; the child script calls serveCommands with its handler. Replies come back in
 * order: { ok, result } or { ok: false, error }; the first reply is 'ready'.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface Reply {
  ok: boolean;
  result?: unknown;
  error?: string;
}

export class IpcPeer {
  private pending: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];

  private constructor(readonly child: ChildProcess) {
    child.on('message', (m: Reply) => {
      const waiter = this.pending.shift();
      if (m.ok) waiter?.resolve(m.result);
      else waiter?.reject(new Error(m.error));
    });
    child.on('exit', (code, signal) => {
      for (const waiter of this.pending.splice(0))
        waiter.reject(new Error(`peer exited ${code ?? signal}`));
    });
  }

  /**
   * Starts `script` (TypeScript, through tsx) and waits for its 'ready'. `exec`: an argv
   * prefix to run it under (a network-namespace host); `quiet`: drop its stdout and stderr.
   */
  static async start(
    script: URL | string,
    options: { exec?: string[]; quiet?: boolean } = {},
  ): Promise<IpcPeer> {
    const path = script instanceof URL ? fileURLToPath(script) : script;
    const stdio = options.quiet
      ? (['ignore', 'ignore', 'ignore', 'ipc'] as const)
      : (['ignore', 'inherit', 'inherit', 'ipc'] as const);
    const exec = options.exec ?? [];
    const child =
      exec.length === 0
        ? fork(path, [], { execArgv: ['--import', 'tsx'], stdio: [...stdio] })
        : spawn(exec[0]!, [...exec.slice(1), process.execPath, '--import', 'tsx', path], {
            stdio: [...stdio],
          });
    const peer = new IpcPeer(child);
    await new Promise((resolve, reject) => peer.pending.push({ resolve, reject }));
    return peer;
  }

  /** Sends one command; resolves with its result, rejects with the peer's error. */
  call<T>(command: Record<string, unknown>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ resolve: resolve as (v: unknown) => void, reject });
      this.child.send(command);
    });
  }
}

/** The child side: answers each command with `handle`'s result, then says it is ready. */
export function serveCommands<C>(handle: (command: C) => Promise<unknown>): void {
  process.on('message', (command: C) => {
    handle(command).then(
      (result) => process.send!({ ok: true, result } satisfies Reply),
      (error: unknown) =>
        process.send!({
          ok: false,
          error: String((error as Error).stack ?? error),
        } satisfies Reply),
    );
  });
  process.send!({ ok: true, result: 'ready' } satisfies Reply);
}

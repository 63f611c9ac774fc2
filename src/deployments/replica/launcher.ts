// Starts replicas as local processes (the local launcher; a cluster launcher would start pods).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { tiedToParent } from '../../util/processes.js';
import type { ReplicaConfig } from './main.js';

export interface ReplicaHandle {
  id: string;
  url: string;
  pid: number;
  /** The bearer token the replica requires (given to it in its environment), if any. */
  token?: string;
  /** Milliseconds from spawn to serving. */
  startMs: number;
  /** Resolves with the exit code (null when killed by a signal) when the process ends. */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export interface ReplicaLauncher {
  launch(config: ReplicaConfig): Promise<ReplicaHandle>;
}

function replicaCommand(): string[] {
  const here = import.meta.url;
  if (here.endsWith('.ts'))
    return [
      process.execPath,
      '--import',
      import.meta.resolve('tsx'),
      fileURLToPath(new URL('./main.ts', here)),
    ];
  return [process.execPath, fileURLToPath(new URL('./main.js', here))];
}

export class LocalReplicaLauncher implements ReplicaLauncher {
  constructor(private readonly opts: { startTimeoutMs?: number } = {}) {}

  launch(config: ReplicaConfig): Promise<ReplicaHandle> {
    const [node, ...nodeArgs] = replicaCommand() as [string, ...string[]];
    // A replica never outlives the process serving its deployment, even one SIGKILLed.
    const [cmd, args] = tiedToParent(node, nodeArgs);
    const t0 = performance.now();
    // a fresh secret per replica: only the gateway that launched it can call it
    const token = randomBytes(32).toString('base64url');
    const child: ChildProcess = spawn(cmd, args, {
      env: {
        ...process.env,
        TEMPER_REPLICA_CONFIG: JSON.stringify(config),
        TEMPER_REPLICA_TOKEN: token,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(
          new Error(
            `replica ${config.replicaId} did not start within ${this.opts.startTimeoutMs ?? 60_000} ms: ${stderr}`,
          ),
        );
      }, this.opts.startTimeoutMs ?? 60_000);
      let out = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n').find((l) => l.startsWith('{"ready"'));
        if (!line) return;
        clearTimeout(timer);
        const { port } = JSON.parse(line) as { port: number };
        const exited = new Promise<number | null>((r) => {
          if (child.exitCode !== null || child.signalCode !== null) r(child.exitCode);
          else child.once('exit', (code) => r(code));
        });
        resolve({
          id: config.replicaId,
          url: `http://127.0.0.1:${port}`,
          token,
          pid: child.pid ?? -1,
          startMs: performance.now() - t0,
          exited,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            await exited;
          },
        });
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(
          new Error(`replica ${config.replicaId} exited with ${code} before serving: ${stderr}`),
        );
      });
    });
  }
}

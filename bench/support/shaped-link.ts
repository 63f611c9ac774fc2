// A network link of a given rate for benchmarks: a Linux network namespace joined to this one
// by a veth pair whose two ends are shaped by `tc` (a token-bucket filter each way), so a
// server started inside it is reached at that rate, as over a real link. Needs root and
// iproute2 (`ip`, `tc`), as the worker-host tests do.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface ShapedLink {
  /** This side's address on the link. */
  localIp: string;
  /** The namespace's address (what a server inside binds). */
  remoteIp: string;
  /** argv prefix that runs a command inside the namespace. */
  exec: string[];
  destroy(): void;
}

function run(...argv: string[]): void {
  execFileSync(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * `rate` in tc's units (`1gbit`). The bucket holds 1 ms of the rate at the least (so a burst
 * cannot lift the average) and the queue 50 ms of it; the veth itself adds no delay.
 */
export function createShapedLink(rate = '1gbit'): ShapedLink {
  const tag = randomBytes(3).toString('hex');
  const name = `temper-link-${tag}`;
  const outer = `tl${tag}a`;
  const inner = `tl${tag}b`;
  const subnet = `10.${150 + (parseInt(tag.slice(0, 2), 16) % 40)}.${parseInt(tag.slice(2, 4), 16)}`;
  const shape = ['root', 'tbf', 'rate', rate, 'burst', '256kb', 'latency', '50ms'];
  try {
    run('ip', 'netns', 'add', name);
  } catch (error) {
    throw new Error(
      `cannot create a network namespace (run as root with iproute2): ${(error as Error).message}`,
    );
  }
  const destroy = () => {
    try {
      run('ip', 'netns', 'del', name);
    } catch {
      // already gone
    }
  };
  try {
    run('ip', 'link', 'add', outer, 'type', 'veth', 'peer', 'name', inner);
    run('ip', 'link', 'set', inner, 'netns', name);
    run('ip', 'addr', 'add', `${subnet}.1/24`, 'dev', outer);
    run('ip', 'link', 'set', outer, 'up');
    run('tc', 'qdisc', 'add', 'dev', outer, ...shape);
    const inside = ['ip', 'netns', 'exec', name];
    run(...inside, 'ip', 'addr', 'add', `${subnet}.2/24`, 'dev', inner);
    run(...inside, 'ip', 'link', 'set', inner, 'up');
    run(...inside, 'ip', 'link', 'set', 'lo', 'up');
    run(...inside, 'tc', 'qdisc', 'add', 'dev', inner, ...shape);
    return { localIp: `${subnet}.1`, remoteIp: `${subnet}.2`, exec: inside, destroy };
  } catch (error) {
    destroy();
    throw error;
  }
}

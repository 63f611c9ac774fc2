/**
 * Hosts for tests: Linux network namespaces, each with its own loopback and a veth link to the
 * test's namespace (`ip netns`, `ip link`, from iproute2; needs root, as CI runs). A process
 * started in a host sees only that host's 127.0.0.1 — a trainer pod bound there is reachable
 * from its own worker and from nowhere else, as on separate machines.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface TestHost {
  name: string;
  /** The test namespace's end of the link (what the host reaches the test's servers at). */
  gatewayIp: string;
  /** The host's own end of the link (what the test, and with routeVia other hosts, reach it at). */
  ip: string;
  /** argv prefix that runs a command inside the host. */
  exec: string[];
  destroy(): void;
}

function ip(...args: string[]) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Lets hosts reach one another, as machines on one network do: a default route through the
 * test namespace, which forwards between the links (net.ipv4.ip_forward must be on).
 */
export function routeBetweenHosts(hosts: readonly TestHost[]): void {
  for (const h of hosts)
    ip('netns', 'exec', h.name, 'ip', 'route', 'add', 'default', 'via', h.gatewayIp);
}

export function createTestHost(index: number): TestHost {
  const tag = randomBytes(3).toString('hex');
  const name = `temper-${tag}-${index}`;
  const outer = `tv${tag}${index}a`;
  const inner = `tv${tag}${index}b`;
  const subnet = `10.${200 + (parseInt(tag.slice(0, 2), 16) % 50)}.${index + 1}`;
  try {
    ip('netns', 'add', name);
  } catch (error) {
    throw new Error(
      `cannot create a network namespace (run the tests as root with iproute2 installed): ${(error as Error).message}`,
    );
  }
  ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner);
  ip('link', 'set', inner, 'netns', name);
  ip('addr', 'add', `${subnet}.1/24`, 'dev', outer);
  ip('link', 'set', outer, 'up');
  ip('netns', 'exec', name, 'ip', 'addr', 'add', `${subnet}.2/24`, 'dev', inner);
  ip('netns', 'exec', name, 'ip', 'link', 'set', inner, 'up');
  ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  return {
    name,
    gatewayIp: `${subnet}.1`,
    ip: `${subnet}.2`,
    exec: ['ip', 'netns', 'exec', name],
    destroy() {
      // Deleting the namespace removes its end of the veth pair, and with it the other end.
      try {
        ip('netns', 'del', name);
      } catch {
        // already gone
      }
    },
  };
}

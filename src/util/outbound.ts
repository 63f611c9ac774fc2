/**
 * Outbound requests to URLs a user gave (an RFT job's remote environment, its `/init`): they
 * must not reach the platform's own network — loopback, link-local (the cloud metadata
 * service at 169.254.169.254), private and carrier-grade NAT ranges, multicast, unspecified —
 * unless the operator allows it (`TEMPER_OUTBOUND_ALLOW_PRIVATE=1`; tests that run remote
 * environments on loopback say so explicitly).
 *
 * The check is on the addresses the connection goes to, at connect time: the socket's own
 * DNS lookup is replaced by one that refuses a private answer, so a name that resolves to a
 * public address when validated and to 127.0.0.1 a moment later (DNS rebinding) is refused
 * all the same. Literal IP hosts (no lookup happens) are checked before connecting.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { z } from 'zod';

/** The operator's setting (one schema, read once where a worker starts). */
export const outboundSettingsSchema = z.object({
  allowPrivateNetworks: z
    .enum(['0', '1', 'true', 'false'], {
      message: 'TEMPER_OUTBOUND_ALLOW_PRIVATE must be 1/true or 0/false',
    })
    .default('0')
    .transform((v) => v === '1' || v === 'true'),
});
export type OutboundSettings = z.output<typeof outboundSettingsSchema>;

export function outboundSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): OutboundSettings {
  return outboundSettingsSchema.parse({ allowPrivateNetworks: env.TEMPER_OUTBOUND_ALLOW_PRIVATE });
}

const blocked = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  blocked.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  blocked.addSubnet(net, bits, 'ipv6');

/** Is `ip` (v4, v6, or v4-mapped v6) in a range user URLs may not reach? */
export function isPrivateAddress(ip: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
  if (mapped) return blocked.check(mapped, 'ipv4');
  const family = isIP(ip);
  if (family === 0) return true;
  return blocked.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

export class OutboundRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OutboundRefusedError';
  }
}

const refusal = (host: string, ip: string) =>
  new OutboundRefusedError(
    `${host} resolves to ${ip}, a loopback, link-local or private address: user URLs may not reach the platform's network (an operator may allow it with TEMPER_OUTBOUND_ALLOW_PRIVATE=1)`,
  );

/** A socket lookup that fails when any address of the name is private. */
export const guardedLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '', 0);
    const list = addresses as LookupAddress[];
    const bad = list.find((a) => isPrivateAddress(a.address));
    if (bad) return callback(refusal(hostname, bad.address), '', 0);
    if (options.all) return (callback as (e: null, a: LookupAddress[]) => void)(null, list);
    const first = list[0] as LookupAddress;
    callback(null, first.address, first.family);
  });
};

export interface OutboundResponse {
  status: number;
  ok: boolean;
  text(): Promise<string>;
}

/**
 * A POST/GET to a user URL through the guard (or plainly where the operator allows private
 * networks). Answers are read up to `maxBytes`.
 */
export function outboundRequest(
  url: string,
  init: {
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    signal?: AbortSignal;
    maxBytes?: number;
  },
  settings: OutboundSettings,
): Promise<OutboundResponse> {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    return Promise.reject(new OutboundRefusedError(`${url}: only http and https URLs are called`));
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (!settings.allowPrivateNetworks && isIP(host) !== 0 && isPrivateAddress(host))
    return Promise.reject(refusal(host, host));
  const maxBytes = init.maxBytes ?? 1 << 20;
  const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      u,
      {
        method: init.method ?? 'GET',
        headers: init.headers,
        // a fresh connection each time: a pooled socket would skip the lookup below
        agent: false,
        ...(settings.allowPrivateNetworks ? {} : { lookup: guardedLookup }),
        ...(init.signal ? { signal: init.signal } : {}),
      },
      (res) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < maxBytes) parts.push(c.subarray(0, maxBytes - size));
          size += c.length;
        });
        res.on('error', reject);
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(parts).toString('utf8');
          resolve({ status, ok: status >= 200 && status < 300, text: async () => text });
        });
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

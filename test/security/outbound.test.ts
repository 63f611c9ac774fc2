// Outbound requests to user URLs (issue 14 item 2): the worker's call to an RFT remote
// environment's /init refuses loopback, link-local and private addresses — by the address the
// socket would connect to (a name resolving to loopback is refused like the literal) — unless
// the operator allows private networks.
import { mkdtemp } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import {
  isPrivateAddress,
  OutboundRefusedError,
  outboundRequest,
  outboundSettingsFromEnv,
} from '../../src/util/outbound.js';
import { RolloutTracer } from '../../src/workflows/activities/remote-rollouts.js';

let server: Server;
let port = 0;
let hits = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    hits++;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const closed = { allowPrivateNetworks: false };
const open = { allowPrivateNetworks: true };

describe('address ranges', () => {
  it.each([
    '127.0.0.1',
    '127.1.2.3',
    '169.254.169.254',
    '10.0.0.8',
    '172.20.1.1',
    '192.168.1.1',
    '100.64.0.1',
    '0.0.0.0',
    '::1',
    '::',
    'fe80::1',
    'fd00::1',
    '::ffff:127.0.0.1',
    '::ffff:169.254.169.254',
  ])('%s is refused', (ip) => expect(isPrivateAddress(ip)).toBe(true));
  it.each(['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '172.32.0.1'])('%s is public', (ip) =>
    expect(isPrivateAddress(ip)).toBe(false),
  );
});

describe('outbound requests', () => {
  it('refuses a loopback literal and never connects', async () => {
    const before = hits;
    await expect(outboundRequest(`http://127.0.0.1:${port}/init`, {}, closed)).rejects.toThrow(
      OutboundRefusedError,
    );
    expect(hits).toBe(before);
  });

  it('refuses the metadata service', async () => {
    await expect(
      outboundRequest('http://169.254.169.254/latest/meta-data/', {}, closed),
    ).rejects.toThrow(/link-local or private address/);
  });

  it('refuses a name by what it resolves to at connect time (localhost -> loopback)', async () => {
    const before = hits;
    await expect(outboundRequest(`http://localhost:${port}/init`, {}, closed)).rejects.toThrow(
      /localhost resolves to (127\.0\.0\.1|::1)/,
    );
    expect(hits).toBe(before);
  });

  it('refuses schemes other than http(s)', async () => {
    await expect(outboundRequest('file:///etc/passwd', {}, closed)).rejects.toThrow(
      /only http and https/,
    );
  });

  it('reaches loopback when the operator allows private networks', async () => {
    const r = await outboundRequest(`http://localhost:${port}/init`, { method: 'POST' }, open);
    expect(r.status).toBe(200);
    expect(JSON.parse(await r.text())).toEqual({ ok: true });
  });

  it('the setting is read from TEMPER_OUTBOUND_ALLOW_PRIVATE, refused when malformed', () => {
    expect(outboundSettingsFromEnv({})).toEqual(closed);
    expect(outboundSettingsFromEnv({ TEMPER_OUTBOUND_ALLOW_PRIVATE: '1' })).toEqual(open);
    expect(() => outboundSettingsFromEnv({ TEMPER_OUTBOUND_ALLOW_PRIVATE: 'yes' })).toThrow(
      /TEMPER_OUTBOUND_ALLOW_PRIVATE must be/,
    );
  });
});

describe('RFT remote environments', () => {
  const rollout = (tracer: RolloutTracer, remoteServerUrl: string) =>
    tracer.run({
      remoteServerUrl,
      gatewayUrl: 'http://127.0.0.1:1',
      gatewayHeaders: {},
      account: 'alice',
      rolloutId: `r-${Math.random().toString(36).slice(2)}`,
      metadata: { invocation_id: 'i', experiment_id: 'e', run_id: 'r', row_id: 'w' },
      messages: [],
      tools: undefined,
      completionParams: { model: 'm', temperature: 1, max_tokens: 4, top_p: 1, top_k: 0 },
      timeoutMs: 2_000,
    });

  it('a remote server on loopback gets no /init unless the operator allows it', async () => {
    const logs = await openObjectStore(
      pathToFileURL(await mkdtemp(join(tmpdir(), 'temper-outbound-'))).href,
    );
    const tracer = await RolloutTracer.start('127.0.0.1', logs, { outbound: closed, pollMs: 20 });
    try {
      const before = hits;
      for (const url of [`http://127.0.0.1:${port}`, `http://localhost:${port}`]) {
        const r = await rollout(tracer, url);
        expect(r.status).toBe('error');
        expect(r.message).toMatch(/remote server \/init failed: .*private address/);
      }
      expect(hits).toBe(before);
    } finally {
      await tracer.close();
    }
    // with the operator's allowance the same server gets its /init (then no log record ends it)
    const allowed = await RolloutTracer.start('127.0.0.1', logs, { outbound: open, pollMs: 20 });
    try {
      const before = hits;
      const r = await rollout(allowed, `http://localhost:${port}`);
      expect(r.status).toBe('timeout');
      expect(hits).toBe(before + 1);
    } finally {
      await allowed.close();
    }
  });
});

// Who may call a deployment's gateway directly (issue 14 item 1): a generated matrix over every
// gateway route and every credential (none, garbage, another account's key, the owner's key,
// the deployment's access token), over a real control plane whose registry checks keys with
// the control plane's store, and real replica processes. Plus: bodies over the limit are
// refused with 413 before they are read whole, and an identity with a NUL byte is a 400.
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileUrlToRoot } from '../../src/checkpoints/object-store/index.js';
import { baseTensors, perturb, writeFull } from '../deployments/fixtures.js';
import { type GatewayHarness, startGatewayHarness } from '../support/gateways.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
const NAME = 'accounts/alice/deployments/guarded';
let h: GatewayHarness;
let gatewayUrl: string;

beforeAll(async () => {
  h = await startGatewayHarness({ credentials: 'account keys' });
  const created = await h.call('POST', '/v1/accounts/alice/deployments?deploymentId=guarded', {
    body: { baseModel: BASE, minReplicaCount: 1, maxReplicaCount: 1 },
  });
  if (created.status !== 200) throw new Error(JSON.stringify(created.json));
  gatewayUrl = h.registry.get(NAME).gatewayUrl as string;
  const bucket = join(
    fileUrlToRoot(h.checkpoints.url),
    'accounts/alice/deployments/guarded/snapshots',
  );
  await writeFull(bucket, 'snap-1', perturb(await baseTensors(), 1));
}, 120_000);
afterAll(async () => {
  await h?.close();
});

interface Route {
  method: string;
  path: () => string;
  body?: unknown;
}
const ROUTES: Record<string, Route> = {
  models: { method: 'GET', path: () => '/inference/v1/models' },
  model: { method: 'GET', path: () => `/inference/v1/models/${encodeURIComponent(BASE)}` },
  completions: {
    method: 'POST',
    path: () => '/inference/v1/completions',
    body: { prompt: 'hi', max_tokens: 2, temperature: 0 },
  },
  chat: {
    method: 'POST',
    path: () => '/inference/v1/chat/completions',
    body: { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, temperature: 0 },
  },
  'hot-load status': { method: 'GET', path: () => '/hot_load/v1/models/hot_load' },
  'hot-load signal': {
    method: 'POST',
    path: () => '/hot_load/v1/models/hot_load',
    body: { identity: 'snap-1' },
  },
  'hot-load hint': {
    method: 'POST',
    path: () => '/hot_load/v1/models/hot_load/hint',
    body: { snapshot: { identity: 'snap-1' }, filename: 'config.json' },
  },
  ledger: { method: 'GET', path: () => `/v1/${NAME}/ledger` },
  'ledger reset': { method: 'DELETE', path: () => `/v1/${NAME}/ledger` },
};

type Credential = 'none' | 'garbage' | 'other account' | 'owner key' | 'access token';
const CREDENTIALS: Credential[] = ['none', 'garbage', 'other account', 'owner key', 'access token'];

function headerFor(c: Credential): Record<string, string> {
  const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
  switch (c) {
    case 'none':
      return {};
    case 'garbage':
      return bearer('tmp_not-a-key');
    case 'other account':
      return bearer(h.bob);
    case 'owner key':
      return bearer(h.alice);
    case 'access token':
      return h.registry.authHeaders(NAME);
  }
}

async function call(route: Route, headers: Record<string, string>, base = gatewayUrl) {
  const res = await fetch(`${base}${route.path()}`, {
    method: route.method,
    headers: {
      'fireworks-deployment': NAME,
      'fireworks-model': BASE,
      ...(route.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    ...(route.body === undefined ? {} : { body: JSON.stringify(route.body) }),
  });
  return { status: res.status, text: await res.text() };
}

describe('gateway routes: the cross-account matrix', () => {
  for (const [routeName, route] of Object.entries(ROUTES))
    for (const c of CREDENTIALS)
      it(`${routeName} with ${c}`, async () => {
        const r = await call(route, headerFor(c));
        if (c === 'none' || c === 'garbage') expect(r.status, r.text).toBe(401);
        else if (c === 'other account') {
          // another account learns nothing: the answer of an unknown deployment
          expect(r.status, r.text).toBe(404);
          expect(JSON.parse(r.text).error.message).toBe(`${NAME} not found`);
        } else expect(r.status, r.text).toBe(200);
      }, 60_000);

  it('the control-plane proxy still serves the owner (it presents the access token)', async () => {
    const r = await call(
      ROUTES.completions as Route,
      { authorization: `Bearer ${h.alice}` },
      h.url,
    );
    expect(r.status, r.text).toBe(200);
    const other = await call(
      ROUTES.completions as Route,
      { authorization: `Bearer ${h.bob}` },
      h.url,
    );
    expect(other.status).toBe(404);
  }, 60_000);
});

describe('replica processes', () => {
  it('answer only their gateway: a direct call without its token is 401', async () => {
    const [replica] = h.registry.replicas(NAME);
    for (const [method, path] of [
      ['GET', '/status'],
      ['GET', '/metrics'],
      ['POST', '/load'],
      ['POST', '/generate'],
    ] as const) {
      for (const headers of [
        {},
        { authorization: `Bearer ${h.alice}` },
        h.registry.authHeaders(NAME),
      ]) {
        const r = await fetch(`${replica?.url}${path}`, {
          method,
          headers,
          ...(method === 'POST' ? { body: '{}' } : {}),
        });
        expect(r.status, `${method} ${path}`).toBe(401);
      }
    }
  });
});

describe('request bodies and identities', () => {
  const owner = () => ({ authorization: `Bearer ${h.alice}` });

  /** Streams `total` bytes (or until the server answers); resolves the status and bytes sent. */
  function upload(path: string, total: number, declare: boolean) {
    return new Promise<{ status: number; sent: number }>((resolve, reject) => {
      const req = request(`${gatewayUrl}${path}`, {
        method: 'POST',
        headers: {
          ...owner(),
          'content-type': 'application/json',
          ...(declare ? { 'content-length': String(total) } : {}),
        },
      });
      let sent = 0;
      let answered = false;
      const chunk = Buffer.alloc(1 << 20, 0x20);
      req.on('response', (res) => {
        answered = true;
        res.resume();
        resolve({ status: res.statusCode ?? 0, sent });
        req.destroy();
      });
      req.on('error', (err) => {
        if (!answered) reject(err);
      });
      const pump = () => {
        while (!answered && sent < total) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        if (!answered) req.end();
      };
      pump();
    });
  }

  it('a 600 MB body with its length declared is refused with 413 before it is read', async () => {
    const r = await upload('/inference/v1/completions', 600 * (1 << 20), true);
    expect(r.status).toBe(413);
    expect(r.sent).toBeLessThan(600 * (1 << 20));
  }, 60_000);

  it('a chunked body is refused with 413 once it passes the limit', async () => {
    const r = await upload('/hot_load/v1/models/hot_load', 600 * (1 << 20), false);
    expect(r.status).toBe(413);
    expect(r.sent).toBeLessThan(600 * (1 << 20));
  }, 60_000);

  it('an identity with a NUL byte is a 400 naming the problem', async () => {
    const r = await call(
      {
        method: 'POST',
        path: () => '/hot_load/v1/models/hot_load',
        body: { identity: 'a\u0000b' },
      },
      owner(),
    );
    expect(r.status, r.text).toBe(400);
    expect(JSON.parse(r.text).error.message).toContain('control character');
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConnection } from '../../src/cli/api/connection.js';
import { type Harness, startHarness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

describe('accounts', () => {
  it("lists exactly the key's own account", async () => {
    const res = await h.call('GET', '/v1/accounts');
    expect(res.status).toBe(200);
    expect(res.json.accounts).toHaveLength(1);
    expect(res.json.accounts[0]).toMatchObject({ name: 'accounts/alice' });
    expect((await h.call('GET', '/v1/accounts', { key: h.bob })).json.accounts[0].name).toBe(
      'accounts/bob',
    );
  });

  it('takes the key from X-Api-Key in any case, or from Bearer, as the Python SDK sends it', async () => {
    for (const name of ['X-Api-Key', 'x-api-key', 'X-API-KEY']) {
      const res = await h.call('GET', '/v1/accounts?pageSize=2', {
        key: null,
        headers: { [name]: h.bob },
      });
      expect(res.status).toBe(200);
      expect(res.json.accounts).toEqual([expect.objectContaining({ name: 'accounts/bob' })]);
    }
    const both = await h.call('GET', '/v1/accounts', {
      key: h.bob,
      headers: { 'x-api-key': h.bob },
    });
    expect(both.json.accounts[0].name).toBe('accounts/bob');
    const mixed = await h.call('GET', '/v1/accounts', { headers: { 'x-api-key': h.bob } });
    expect(mixed.status).toBe(401);
    expect(mixed.json.error.message).toBe(
      'X-Api-Key and Authorization: Bearer carry different keys: send one key',
    );
    const basic = await h.call('GET', '/v1/accounts', {
      key: null,
      headers: { authorization: 'Basic Ym9iOng=' },
    });
    expect(basic.json.error.message).toBe('the Authorization header must be "Bearer <key>"');
  });

  it('mints keys that Tinker clients do not take for their own (tml-) or for JWTs (eyJ)', () => {
    for (const key of [h.alice, h.bob]) {
      expect(key.startsWith('tml-')).toBe(false);
      expect(key.startsWith('eyJ')).toBe(false);
    }
  });

  it('accepts tml-<key> only on the trainer gateway', async () => {
    const rest = await h.call('GET', '/v1/accounts', { key: `tml-${h.bob}` });
    expect(rest.status).toBe(401);
    const gateway = await h.call('GET', '/training/v1/rlorTrainerJobs/bob/none/api/v1/healthz', {
      key: null,
      headers: { 'X-API-Key': `tml-${h.bob}` },
    });
    // Authenticated as bob: the job is simply absent.
    expect(gateway.status).toBe(404);
    expect(gateway.json.error.message).toBe('accounts/bob/rlorTrainerJobs/none not found');
  });

  it('gets its own account; another is not found', async () => {
    expect((await h.call('GET', '/v1/accounts/alice')).json).toMatchObject({
      name: 'accounts/alice',
    });
    expect((await h.call('GET', '/v1/accounts/bob')).status).toBe(404);
    expect((await h.call('GET', '/v1/accounts', { key: 'tmp_nope' })).status).toBe(401);
  });

  it('lets the CLI find the account of a key given alone', async () => {
    const url = await h.cp.listen(0, '127.0.0.1');
    const connection = await resolveConnection(
      { apiUrl: url, apiKey: h.bob },
      { TEMPER_HOME: '/nonexistent-temper-home' },
    );
    expect(connection.account).toBe('bob');
  });
});

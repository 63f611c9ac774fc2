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

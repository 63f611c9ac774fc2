import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, jsonl, readyDataset, sftRows, startHarness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ maxUploadBytes: 64 * 1024 });
});
afterAll(() => h.close());

const blobs = async (prefix: string) => (await h.artifacts.list(prefix)).map((o) => o.key);

describe('datasets', () => {
  it('creates (UPLOADING), uploads (READY with the validated count), gets and lists', async () => {
    const c = await h.call('POST', '/v1/accounts/alice/datasets', {
      body: { datasetId: 'chat', dataset: { userUploaded: {}, exampleCount: 99 } },
    });
    expect(c.status).toBe(200);
    expect(c.json).toMatchObject({
      name: 'accounts/alice/datasets/chat',
      state: 'UPLOADING',
      exampleCount: 99,
    });
    const u = await h.upload('/v1/accounts/alice/datasets/chat:upload', jsonl(sftRows(5)));
    expect(u.status).toBe(200);
    expect(u.json).toMatchObject({ state: 'READY', kind: 'sft', exampleCount: 5 });
    expect(await blobs('accounts/alice/datasets/chat/')).toEqual([
      'accounts/alice/datasets/chat/data.jsonl',
    ]);
    const g = await h.call('GET', '/v1/accounts/alice/datasets/chat');
    expect(g.json).toMatchObject({ state: 'READY', exampleCount: 5 });
    const l = await h.call('GET', '/v1/accounts/alice/datasets');
    expect(l.json.datasets.map((d: { name: string }) => d.name)).toContain(
      'accounts/alice/datasets/chat',
    );
    expect(l.json.nextPageToken).toBe('');
  });

  it('refuses a second upload: datasets are immutable', async () => {
    const u = await h.upload('/v1/accounts/alice/datasets/chat:upload', jsonl(sftRows(5)));
    expect(u.status).toBe(400);
    expect(u.json.error.status).toBe('FAILED_PRECONDITION');
  });

  it('a bad file leaves nothing behind: the error names the line, no blob, still UPLOADING', async () => {
    await h.call('POST', '/v1/accounts/alice/datasets', {
      body: { datasetId: 'bad', dataset: { userUploaded: {} } },
    });
    const text = `${jsonl(sftRows(3))}{"messages": [}\n`;
    const u = await h.upload('/v1/accounts/alice/datasets/bad:upload', text);
    expect(u.status).toBe(400);
    expect(u.json.error.status).toBe('INVALID_ARGUMENT');
    expect(u.json.error.message).toMatch(/^Dataset validation failed: invalid JSON on line 4/);
    expect(u.json.error.details[0]).toMatchObject({ code: 'invalid_json', line: 4 });
    expect(await blobs('accounts/alice/datasets/bad/')).toEqual([]);
    const g = await h.call('GET', '/v1/accounts/alice/datasets/bad');
    expect(g.json.state).toBe('UPLOADING');
  });

  it('reports a missing messages field with its line', async () => {
    const text = jsonl([...sftRows(3), { prompt: 'hi' }]);
    const u = await h.upload('/v1/accounts/alice/datasets/bad:upload', text);
    expect(u.json.error.message).toBe(
      "Dataset validation failed: Missing required field 'messages' on line 4",
    );
  });

  it('refuses a file over the upload limit and keeps no blob', async () => {
    const big = jsonl(sftRows(2000));
    const u = await h.upload('/v1/accounts/alice/datasets/bad:upload', big);
    expect(u.status).toBe(413);
    expect(await blobs('accounts/alice/datasets/bad/')).toEqual([]);
  });

  it('needs the multipart field "file"', async () => {
    const u = await h.upload('/v1/accounts/alice/datasets/bad:upload', jsonl(sftRows(3)), {
      field: 'data',
    });
    expect(u.status).toBe(400);
    expect(u.json.error.message).toMatch(/field 'file'/);
  });

  it('validates a stored dataset on request', async () => {
    const v = await h.call('POST', '/v1/accounts/alice/datasets/chat:validate', { body: {} });
    expect(v.json).toMatchObject({ valid: true, kind: 'sft', exampleCount: 5 });
    const asDpo = await h.call('POST', '/v1/accounts/alice/datasets/chat:validate', {
      body: { kind: 'dpo' },
    });
    expect(asDpo.json.valid).toBe(false);
    expect(asDpo.json.errors[0].line).toBe(1);
  });

  it('detects DPO and RFT datasets by their first example', async () => {
    const dpo = await readyDataset(h, 'prefs', [
      ...Array.from({ length: 3 }, () => ({
        input: { messages: [{ role: 'user', content: 'hi' }] },
        preferred_output: [{ role: 'assistant', content: 'hello' }],
        non_preferred_output: [{ role: 'assistant', content: 'go away' }],
      })),
    ]);
    expect((await h.call('GET', `/v1/${dpo}`)).json.kind).toBe('dpo');
    const rft = await readyDataset(h, 'prompts', [
      { messages: [{ role: 'user', content: '2+2?' }], ground_truth: '4' },
    ]);
    expect((await h.call('GET', `/v1/${rft}`)).json.kind).toBe('rft');
  });

  it('validates create bodies and ids', async () => {
    const noId = await h.call('POST', '/v1/accounts/alice/datasets', { body: { dataset: {} } });
    expect(noId.json.error.message).toBe('datasetId is required');
    const badId = await h.call('POST', '/v1/accounts/alice/datasets', {
      body: { datasetId: '9lives', dataset: {} },
    });
    expect(badId.json.error.message).toMatch(/^datasetId '9lives' is not a valid id/);
    const badField = await h.call('POST', '/v1/accounts/alice/datasets', {
      body: { datasetId: 'x', dataset: { exampleCount: 'many' } },
    });
    expect(badField.json.error.message).toMatch(/^dataset\.exampleCount: /);
    const dup = await h.call('POST', '/v1/accounts/alice/datasets?datasetId=chat', {
      body: { dataset: {} },
    });
    expect(dup.status).toBe(409);
    expect(dup.json.error.status).toBe('ALREADY_EXISTS');
  });

  it('pages the list', async () => {
    const seen: string[] = [];
    let token = '';
    do {
      const r = await h.call('GET', `/v1/accounts/alice/datasets?pageSize=1&pageToken=${token}`);
      expect(r.json.datasets.length).toBeLessThanOrEqual(1);
      seen.push(...r.json.datasets.map((d: { name: string }) => d.name));
      token = r.json.nextPageToken;
    } while (token);
    expect(seen).toEqual([
      'accounts/alice/datasets/chat',
      'accounts/alice/datasets/bad',
      'accounts/alice/datasets/prefs',
      'accounts/alice/datasets/prompts',
    ]);
  });

  it('deletes the row and the file', async () => {
    const d = await h.call('DELETE', '/v1/accounts/alice/datasets/prompts');
    expect(d.status).toBe(200);
    expect(await blobs('accounts/alice/datasets/prompts/')).toEqual([]);
    expect((await h.call('GET', '/v1/accounts/alice/datasets/prompts')).status).toBe(404);
  });

  it('serves the bundled catalog dataset read-only', async () => {
    const g = await h.call('GET', '/v1/accounts/temper/datasets/sure-answers-sft');
    expect(g.json).toMatchObject({ state: 'READY', kind: 'sft', public: true });
    expect(g.json.exampleCount).toBeGreaterThan(3);
    const v = await h.call('POST', '/v1/accounts/temper/datasets/sure-answers-sft:validate', {
      key: h.bob,
    });
    expect(v.json).toMatchObject({ valid: true, kind: 'sft' });
    const l = await h.call('GET', '/v1/accounts/temper/datasets', { key: h.bob });
    expect(l.json.datasets.map((d: { name: string }) => d.name)).toEqual([
      'accounts/temper/datasets/sure-answers-sft',
    ]);
    const del = await h.call('DELETE', '/v1/accounts/temper/datasets/sure-answers-sft');
    expect(del.status).toBe(403);
    expect(del.json.error.status).toBe('PERMISSION_DENIED');
  });
});

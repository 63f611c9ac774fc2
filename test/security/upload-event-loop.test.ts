// One upload must not freeze the platform (issue 14 item 4): a large dataset validates on a
// worker thread while the control plane keeps answering. The control plane listens on a real
// port; while the big dataset's validation is running (validationsRunning() is 1), /healthz
// and a dataset read are answered, and the validation is still running when they are: on the
// event loop, no request could be answered until it ended. Bad data in a big file still comes
// back as a 400 with its line, and the stored result is the same as before.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validationsRunning } from '../../src/datasets/validate-off-thread.js';
import { type Harness, jsonl, sftRows, startHarness } from '../control-plane/harness.js';

let h: Harness;
let base = '';

beforeAll(async () => {
  h = await startHarness();
  base = await h.cp.listen(0, '127.0.0.1');
});
afterAll(async () => {
  await h.close();
});

/** A valid SFT file of about `mb` MiB (long assistant turns, so validation has work to do). */
function bigSft(mb: number): string {
  const pad = 'lorem ipsum dolor sit amet '.repeat(20);
  const line = (i: number) =>
    JSON.stringify({
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: `Question ${i}: ${pad}` },
        { role: 'assistant', content: `Answer ${i}: ${pad}` },
      ],
    });
  const one = line(0).length + 1;
  const n = Math.ceil((mb << 20) / one);
  return jsonl(Array.from({ length: n }, (_, i) => JSON.parse(line(i))));
}

async function createDataset(id: string) {
  const r = await fetch(`${base}/v1/accounts/alice/datasets`, {
    method: 'POST',
    headers: { authorization: `Bearer ${h.alice}`, 'content-type': 'application/json' },
    body: JSON.stringify({ datasetId: id, dataset: { userUploaded: {} } }),
  });
  expect(r.status).toBe(200);
}

function upload(id: string, text: string) {
  const form = new FormData();
  form.append('file', new Blob([text]), 'data.jsonl');
  return fetch(`${base}/v1/accounts/alice/datasets/${id}:upload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${h.alice}` },
    body: form,
  }).then(async (r) => ({
    status: r.status,
    json: (await r.json()) as { error: { message: string } } & Record<string, unknown>,
  }));
}

async function until(what: string, check: () => boolean) {
  for (let i = 0; !check(); i++) {
    if (i > 20_000) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('dataset upload off the event loop', () => {
  it('answers /healthz and reads while a large dataset validates', async () => {
    await createDataset('small');
    const small = await upload('small', jsonl(sftRows(5)));
    expect(small.status).toBe(200);

    await createDataset('big');
    const text = bigSft(24);
    let finished = false;
    const pending = upload('big', text).finally(() => {
      finished = true;
    });
    await until(
      'the big dataset to start validating',
      () => validationsRunning() === 1 || finished,
    );
    expect(finished, 'the upload ended before its validation was seen running').toBe(false);

    // Requests sent now are answered while the validation is still running.
    const answered: string[] = [];
    for (const path of ['/healthz', '/v1/accounts/alice/datasets/small', '/healthz']) {
      const r = await fetch(`${base}${path}`, {
        headers: { authorization: `Bearer ${h.alice}` },
      });
      expect(r.status).toBe(200);
      await r.arrayBuffer();
      answered.push(`${path} running=${validationsRunning()}`);
    }
    expect(answered).toEqual([
      '/healthz running=1',
      '/v1/accounts/alice/datasets/small running=1',
      '/healthz running=1',
    ]);
    expect(finished).toBe(false);

    const big = await pending;
    expect(big.status, JSON.stringify(big.json)).toBe(200);
    expect(big.json).toMatchObject({ state: 'READY', kind: 'sft' });
    expect(big.json.exampleCount).toBe(text.trimEnd().split('\n').length);
    expect(validationsRunning()).toBe(0);
    // The stored file is the uploaded one, byte for byte.
    const stored = await h.artifacts.get('accounts/alice/datasets/big/data.jsonl');
    expect(stored.equals(Buffer.from(text))).toBe(true);
  }, 120_000);

  it('a big file with a bad last line is refused with that line, leaving nothing', async () => {
    await createDataset('bad-tail');
    const good = bigSft(4);
    const lines = good.trimEnd().split('\n').length;
    const r = await upload('bad-tail', `${good}{"messages": oops}\n`);
    expect(r.status).toBe(400);
    expect(r.json.error.message).toMatch(
      new RegExp(`^Dataset validation failed: invalid JSON on line ${lines + 1} `),
    );
    const row = await h.store.get<{ state: string }>('datasets', 'alice', 'bad-tail');
    expect(row?.body.state).toBe('UPLOADING');
    expect(await h.artifacts.list('accounts/alice/datasets/bad-tail/')).toEqual([]);
    // :validate of a stored dataset runs off the thread too, with the same answers.
    const v = await fetch(`${base}/v1/accounts/alice/datasets/small:validate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'dpo' }),
    });
    const json = (await v.json()) as { valid: boolean; errors: { line: number }[] };
    expect(json.valid).toBe(false);
    expect(json.errors[0]?.line).toBe(1);
  }, 60_000);
});

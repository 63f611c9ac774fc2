// Downloads of READY models and datasets (:getDownloadEndpoint, then a signed GET per file) over
// a real control plane on a loopback port (SQLite, file:// stores), called also by the pinned
// Fireworks SDK, and `temper model score`
// with a model id: imported (the real CLI import), fetched into the content-keyed cache, and
// scored exactly as the same directory is.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openAdapterModel } from '../../src/checkpoints/exports/index.js';
import { TemperApi } from '../../src/cli/api/client.js';
import { importModel } from '../../src/cli/commands/model-import.js';
import { fetchModel } from '../../src/cli/model-fetch.js';
import { TransformerModel } from '../../src/engine/model.js';
import { tempDir } from '../checkpoints/helpers.js';
import { temper } from '../cli/support.js';
import { ADAPTER, adapterDir, FULL, fixtureDir } from '../support/model-fixtures.js';
import { pythonEnv } from '../support/python-env.js';
import { type Harness, type Json, jsonl, sftRows, startHarness } from './harness.js';

let h: Harness;
let base: string;
let alice: TemperApi;
let fullDir: string;
let loraBaseDir: string;
let loraDir: string;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** A signed URL as the harness's inject takes it (path and query; no origin). */
const local = (url: string) => {
  const u = new URL(url);
  return `${u.pathname}${u.search}`;
};
const get = (url: string, headers: Record<string, string> = {}) =>
  h.cp.app.inject({ method: 'GET', url: local(url), headers });

beforeAll(async () => {
  h = await startHarness();
  base = await h.cp.listen(0, '127.0.0.1');
  alice = new TemperApi({ apiUrl: base, apiKey: h.alice, account: 'alice' });
  fullDir = await fixtureDir('qwen2_bias');
  loraBaseDir = await fixtureDir('qwen2_lora');
  loraDir = await adapterDir('qwen2_lora');
  await importModel(alice, 'tiny', fullDir);
  await importModel(alice, 'lora-base', loraBaseDir);
  await importModel(alice, 'tiny-lora', loraDir, { baseModel: 'lora-base' });
  const bob = new TemperApi({ apiUrl: base, apiKey: h.bob, account: 'bob' });
  await importModel(bob, 'tiny', fullDir);
}, 60_000);

afterAll(async () => {
  await h?.close();
});

async function endpoint(name: string, key?: string) {
  return h.call('GET', `/v1/${name}:getDownloadEndpoint`, key ? { key } : {});
}

describe('GET models/{id}:getDownloadEndpoint', () => {
  it('signs one URL per file; each streams the stored file, and resumes from a byte offset', async () => {
    const ep = await endpoint('accounts/alice/models/tiny');
    expect(ep.status, JSON.stringify(ep.json)).toBe(200);
    const urls = ep.json.filenameToSignedUrls as Record<string, string>;
    expect(Object.keys(urls).sort()).toEqual([...FULL].sort());
    expect(Date.parse(ep.json.expireTime)).toBeGreaterThan(Date.now());
    expect(ep.json.baseModel).toBeUndefined();
    for (const f of FULL) {
      const want = await readFile(join(fullDir, f));
      expect(ep.json.filenameToSize[f]).toBe(want.length);
      expect(ep.json.filenameToSha256[f]).toBe(sha256(want));
      const res = await get(urls[f]!);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.rawPayload.equals(want)).toBe(true);
    }
    const weights = await readFile(join(fullDir, 'model.safetensors'));
    const tail = await get(urls['model.safetensors']!, { range: 'bytes=1000-' });
    expect(tail.statusCode).toBe(206);
    expect(tail.headers['content-range']).toBe(
      `bytes 1000-${weights.length - 1}/${weights.length}`,
    );
    expect(tail.rawPayload.equals(weights.subarray(1000))).toBe(true);
    const bad = await get(urls['model.safetensors']!, { range: 'bytes=0-10' });
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toMatch(/Range 'bytes=0-10' is not supported/);
  });

  it('refuses another account, tampered URLs (token, file, account, expiry) and expired ones', async () => {
    // bob's key does not see alice's model, as a plain GET would not
    const other = await endpoint('accounts/alice/models/tiny', h.bob);
    expect(other.status).toBe(404);
    const urls = (await endpoint('accounts/alice/models/tiny')).json.filenameToSignedUrls as Record<
      string,
      string
    >;
    const url = urls['config.json']!;
    const refused = async (u: string) => {
      const res = await get(u);
      expect(res.statusCode, u).toBe(403);
      return JSON.parse(res.body).error.message as string;
    };
    // the same id in bob's account: alice's token does not open bob's file
    expect(await refused(url.replace('/accounts/alice/', '/accounts/bob/'))).toMatch(
      /download URL is not valid.*another one.*:getDownloadEndpoint/,
    );
    expect(await refused(url.replace('/config.json?', '/model.safetensors?'))).toMatch(/not valid/);
    expect(await refused(url.replace(/token=[^&]+/, 'token=AAAA'))).toMatch(/not valid/);
    expect(
      await refused(url.replace(/expires=(\d+)/, (_, e) => `expires=${Number(e) + 3600}`)),
    ).toMatch(/not valid/);
    expect(await refused(url.replace(/&token=[^&]+/, ''))).toMatch(/not valid/);
    expect(await refused(url.replace('/models/tiny/', '/models/nope/'))).toMatch(/not valid/);
    // an hour and a bit later the untouched URL has expired
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 61 * 60 * 1000 });
    try {
      expect(await refused(url)).toMatch(/download URL expired at .*: ask :getDownloadEndpoint/);
    } finally {
      vi.useRealTimers();
    }
    // and it still works now
    expect((await get(url)).statusCode).toBe(200);
  });

  it('a deleted and re-imported model does not honour the old URLs', async () => {
    const bob = new TemperApi({ apiUrl: base, apiKey: h.bob, account: 'bob' });
    await importModel(bob, 'again', fullDir);
    const url = (
      (await endpoint('accounts/bob/models/again', h.bob)).json.filenameToSignedUrls as Json
    )['config.json'] as string;
    expect((await get(url)).statusCode).toBe(200);
    expect((await h.call('DELETE', '/v1/accounts/bob/models/again', { key: h.bob })).status).toBe(
      200,
    );
    expect((await get(url)).statusCode).toBe(403);
    await importModel(bob, 'again', fullDir);
    expect((await get(url)).statusCode).toBe(403);
  });

  it('a LoRA adapter lists its own files and names its base; a model not READY has none', async () => {
    const ep = await endpoint('accounts/alice/models/tiny-lora');
    expect(ep.status, JSON.stringify(ep.json)).toBe(200);
    expect(Object.keys(ep.json.filenameToSignedUrls).sort()).toEqual(
      (await readdir(loraDir)).sort(),
    );
    for (const f of ADAPTER) expect(ep.json.filenameToSignedUrls[f]).toBeDefined();
    expect(ep.json.baseModel).toBe('accounts/alice/models/lora-base');
    await h.call('POST', '/v1/accounts/alice/models?modelId=pending', { body: {} });
    const pending = await endpoint('accounts/alice/models/pending');
    expect(pending.status).toBe(400);
    expect(pending.json.error.message).toMatch(/UPLOADING: only a READY model can be downloaded/);
    expect((await endpoint('accounts/alice/models/missing')).status).toBe(404);
  });

  it('serves the public catalog model, with digests of its files', async () => {
    const ep = await endpoint('accounts/temper/models/byte-lm-3m');
    expect(ep.status, JSON.stringify(ep.json)).toBe(200);
    expect(Object.keys(ep.json.filenameToSignedUrls)).toContain('model.safetensors');
    expect(Object.keys(ep.json.filenameToSignedUrls)).not.toContain('temper_model.json');
    const res = await get(ep.json.filenameToSignedUrls['config.json']);
    expect(res.statusCode).toBe(200);
    expect(sha256(res.rawPayload)).toBe(ep.json.filenameToSha256['config.json']);
  });
});

describe('the Fireworks SDK (fireworks-ai, pinned, unmodified)', () => {
  it('models.get_download_endpoint and datasets.get_download_endpoint; the URLs fetch the files', async () => {
    const script = `
import hashlib, json, sys, urllib.request
from fireworks import Fireworks
c = Fireworks(api_key=sys.argv[1], base_url=sys.argv[2], account_id="alice")
m = c.models.get_download_endpoint("tiny", read_mask="*")
d = c.datasets.get_download_endpoint("sure-answers-sft", account_id="temper")
get = lambda u: hashlib.sha256(urllib.request.urlopen(u).read()).hexdigest()
print(json.dumps({"model": {f: get(u) for f, u in m.filename_to_signed_urls.items()},
                  "dataset": {f: get(u) for f, u in d.filename_to_signed_urls.items()}}))
`;
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        pythonEnv('fireworks-sdk').python,
        ['-c', script, h.alice, base],
        { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' } },
        (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)),
      ),
    );
    const seen = JSON.parse(out) as { model: Record<string, string>; dataset: Json };
    expect(Object.keys(seen.model).sort()).toEqual([...FULL].sort());
    for (const f of FULL) expect(seen.model[f]).toBe(sha256(await readFile(join(fullDir, f))));
    const catalog = await h.call(
      'GET',
      '/v1/accounts/temper/datasets/sure-answers-sft:getDownloadEndpoint',
    );
    expect(seen.dataset).toEqual(catalog.json.filenameToSha256);
  }, 60_000);
});

describe('GET datasets/{id}:getDownloadEndpoint (the same mechanism)', () => {
  it("signs the dataset's file; another account's key and a tampered token are refused", async () => {
    const text = jsonl(sftRows(3));
    const created = await h.call('POST', '/v1/accounts/alice/datasets', {
      body: { datasetId: 'd1', dataset: { userUploaded: {} } },
    });
    expect(created.status).toBe(200);
    expect((await h.upload('/v1/accounts/alice/datasets/d1:upload', text)).status).toBe(200);
    const ep = await h.call('GET', '/v1/accounts/alice/datasets/d1:getDownloadEndpoint');
    expect(ep.status, JSON.stringify(ep.json)).toBe(200);
    expect(ep.json.filenameToSize).toEqual({ 'data.jsonl': Buffer.byteLength(text) });
    const url = ep.json.filenameToSignedUrls['data.jsonl'] as string;
    expect((await get(url)).body).toBe(text);
    expect((await get(url.replace(/token=[^&]+/, 'token=x'))).statusCode).toBe(403);
    expect(
      (await h.call('GET', '/v1/accounts/alice/datasets/d1:getDownloadEndpoint', { key: h.bob }))
        .status,
    ).toBe(404);
  });
});

describe('temper model score --model <id>', () => {
  const tokens = [5, 17, 3, 30, 22, 9];
  const env = (home: string) => ({
    TEMPER_HOME: home,
    TEMPER_API_URL: base,
    TEMPER_API_KEY: h.alice,
  });
  const score = async (home: string, model: string) => {
    const r = await temper(
      [
        'model',
        'score',
        '--model',
        model,
        '--tokens',
        tokens.join(','),
        '-o',
        'json',
        '--threads',
        '1',
      ],
      env(home),
    );
    expect(r.code, r.stderr).toBe(0);
    return { result: JSON.parse(r.stdout) as Json, stderr: r.stderr };
  };
  const forward = (model: TransformerModel) =>
    Array.from(model.forward([{ tokens: tokens.slice(0, -1), targets: tokens.slice(1) }]));

  it('downloads the imported model into the cache once and scores it as the same directory', async () => {
    const home = tempDir('score-home-');
    const first = await score(home, 'tiny');
    expect(first.result.model).toBe('accounts/alice/models/tiny');
    expect(first.stderr).toMatch(/download/);
    const dirScore = await score(home, fullDir);
    expect(first.result.logprobs).toEqual(dirScore.result.logprobs);
    expect(first.result.logprobs).toEqual(
      forward(await TransformerModel.fromDirectory(fullDir, { threads: 1 })),
    );
    const cached = (await readdir(join(home, 'cache', 'models'))).filter((e) => e !== '.partial');
    expect(cached).toHaveLength(1);
    // by full name, from the cache: nothing is downloaded again
    const again = await score(home, 'accounts/alice/models/tiny');
    expect(again.stderr).not.toMatch(/download/);
    expect(again.result.logprobs).toEqual(first.result.logprobs);
  }, 60_000);

  it('scores a LoRA adapter on its downloaded base, as the engine applies it to the directories', async () => {
    const home = tempDir('score-home-');
    const { result } = await score(home, 'tiny-lora');
    const model = await openAdapterModel(loraBaseDir, loraDir, { threads: 1 });
    expect(result.logprobs).toEqual(forward(model));
    expect(result.logprobs).not.toEqual(
      forward(await TransformerModel.fromDirectory(loraBaseDir, { threads: 1 })),
    );
  }, 60_000);

  it('refuses an unknown id, naming the model', async () => {
    const home = tempDir('score-home-');
    const missing = await temper(
      ['model', 'score', '--model', 'nope', '--tokens', '1,2'],
      env(home),
    );
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/accounts\/alice\/models\/nope not found/);
  }, 60_000);
});

describe('the model cache', () => {
  it('resumes a partial file, discards a corrupt one, and never leaves a half directory in place', async () => {
    const cacheDir = tempDir('model-cache-');
    const ep = (await endpoint('accounts/alice/models/tiny')).json;
    const key = createHash('sha256')
      .update(
        Object.keys(ep.filenameToSha256)
          .sort()
          .map((f) => `${f}\0${ep.filenameToSha256[f]}\n`)
          .join(''),
      )
      .digest('hex');
    const staging = join(cacheDir, '.partial', key);
    await mkdir(staging, { recursive: true });
    const weights = await readFile(join(fullDir, 'model.safetensors'));
    // a corrupt partial file: refused, removed, and the cache entry is not made
    await writeFile(join(staging, 'model.safetensors'), Buffer.alloc(weights.length, 7));
    await expect(fetchModel(alice, 'accounts/alice/models/tiny', { cacheDir })).rejects.toThrow(
      /model\.safetensors: the downloaded file does not match its size and sha256/,
    );
    expect(await readdir(cacheDir)).toEqual(['.partial']);
    // half a file: the rest is fetched with a Range request
    await writeFile(join(staging, 'model.safetensors'), weights.subarray(0, weights.length >> 1));
    const seen: number[] = [];
    const got = await fetchModel(alice, 'accounts/alice/models/tiny', {
      cacheDir,
      onProgress: (done, _total, file) => {
        if (file === 'model.safetensors') seen.push(done);
      },
    });
    // the first bytes counted for the file already include the half that was there
    expect(seen[0]).toBeGreaterThan(ep.filenameToSize['config.json'] + (weights.length >> 1));
    expect(got.dir).toBe(join(cacheDir, key));
    expect((await readFile(join(got.dir, 'model.safetensors'))).equals(weights)).toBe(true);
    expect(await readdir(join(cacheDir, '.partial'))).toEqual([]);
  });

  it('two fetches of the same model at once take turns: one downloads, the other waits and uses it', async () => {
    const cacheDir = tempDir('model-cache-');
    const weights = await readFile(join(fullDir, 'model.safetensors'));
    const downloaded: string[] = [];
    const waited: string[] = [];
    const fetchOnce = (who: string) =>
      fetchModel(alice, 'accounts/alice/models/tiny', {
        cacheDir,
        onProgress: (_done, _total, file) => {
          if (!downloaded.includes(who) && file === 'model.safetensors') downloaded.push(who);
        },
        onWait: () => waited.push(who),
      });
    const [a, b] = await Promise.all([fetchOnce('a'), fetchOnce('b')]);
    expect(a.dir).toBe(b.dir);
    expect(downloaded).toHaveLength(1);
    expect(waited).toHaveLength(1);
    expect(waited[0]).not.toBe(downloaded[0]);
    expect((await readFile(join(a.dir, 'model.safetensors'))).equals(weights)).toBe(true);
    // no partial folder or lock left behind
    expect(await readdir(join(cacheDir, '.partial'))).toEqual([]);
  });
});

// Data at rest on a fresh `temper up` (a subprocess under a temporary TEMPER_HOME): the data
// directory is 0700 and everything in it the owner's only (the store, its WAL and SHM, the
// uploaded dataset, the key and credentials files); secrets are sealed in the database file
// (the plaintext is in none of its bytes); the key can be rotated; and a start with a key that
// cannot open the stored secrets is refused with a clear message.
import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, SecretsKey } from '../../src/store/index.js';
import { startUp, temper, type UpProcess } from './support.js';

const GOOD = 'catalog/accounts/temper/datasets/sure-answers-sft.jsonl';
const PLAINTEXT = 'sk-live-7c1e9b44-plaintext-must-not-appear';

let home: string;
let up: UpProcess;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'temper-at-rest-'));
  // A data directory someone made world-readable: temper up tightens it.
  await chmod(home, 0o755);
  up = await startUp(home);
}, 120_000);

afterAll(async () => {
  if (up?.child.exitCode === null) up.child.kill('SIGKILL');
  await rm(home, { recursive: true, force: true });
});

/** Every file and directory under `dir`, with its permission bits. */
async function modes(dir: string): Promise<{ path: string; dir: boolean; mode: number }[]> {
  const out: { path: string; dir: boolean; mode: number }[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const s = await stat(path).catch(() => undefined);
    if (!s) continue; // gone meanwhile (a temp file)
    if (entry.isSocket()) continue;
    out.push({ path, dir: entry.isDirectory(), mode: s.mode & 0o777 });
    if (entry.isDirectory()) out.push(...(await modes(path)));
  }
  return out;
}

describe('data at rest', () => {
  it('keeps the data directory 0700 and every file in it private', async () => {
    const env = { TEMPER_HOME: home };
    const created = await temper(['dataset', 'create', 'answers', GOOD], env);
    expect(created.code, created.stderr).toBe(0);
    expect((await stat(home)).mode & 0o777).toBe(0o700);
    const all = await modes(home);
    const names = all.map((e) => e.path.slice(home.length + 1));
    for (const expected of [
      'temper.db',
      'temper.db-wal',
      'secrets.key',
      'credentials.json',
      'artifacts',
      'temporal/temporal.db',
      'logs/control-plane.log',
    ])
      expect(names).toContain(expected);
    expect(names.some((n) => n.startsWith('artifacts/') && n.endsWith('.jsonl'))).toBe(true);
    const open = all.filter((e) => (e.mode & 0o077) !== 0);
    expect(open.map((e) => `${e.path} ${e.mode.toString(8)}`)).toEqual([]);
  });

  it('seals secrets in the database file', async () => {
    const env = { TEMPER_HOME: home };
    const made = await temper(['secret', 'create', 'OPENAI_API_KEY', '--value', PLAINTEXT], env);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).not.toContain(PLAINTEXT);
    // Everything SQLite keeps: the main file, the WAL (where the newest pages are) and SHM.
    for (const file of ['temper.db', 'temper.db-wal', 'temper.db-shm']) {
      const bytes = await readFile(join(home, file)).catch(() => Buffer.alloc(0));
      expect(bytes.includes(Buffer.from(PLAINTEXT)), file).toBe(false);
      expect(bytes.includes(Buffer.from(PLAINTEXT, 'utf16le')), file).toBe(false);
    }
  });

  it('rotates the key, and refuses to start with one that cannot open the secrets', async () => {
    up.child.kill('SIGTERM');
    expect(await up.exited).toBe(0);
    const keyFile = join(home, 'secrets.key');
    const before = await SecretsKey.fromFile(keyFile);
    const rotated = await temper(['secrets-key', 'rotate', '-o', 'json'], { TEMPER_HOME: home });
    expect(rotated.code, rotated.stderr).toBe(0);
    const result = JSON.parse(rotated.stdout) as Record<string, unknown>;
    const after = await SecretsKey.fromFile(keyFile);
    expect(result).toEqual({ secrets: 1, oldKeyId: before.id, newKeyId: after.id, keyFile });
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    // The new key opens the secret; the old one no longer does.
    const store = openStore(`sqlite://${join(home, 'temper.db')}`, { secretsKey: after });
    await store.migrate();
    const page = await store.list<{ keyName: string; value: string }>('secrets', 'default');
    expect(page.items.map((r) => r.body)).toEqual([
      { keyName: 'OPENAI_API_KEY', value: PLAINTEXT },
    ]);
    await store.close();
    // A start with another key stops before anything runs and says which key is wrong.
    const wrong = SecretsKey.generate().text.trim();
    const refused = await temper(['up', '--api-port', '0', '--temporal-port', '0'], {
      TEMPER_HOME: home,
      TEMPER_SECRETS_KEY: wrong,
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('temper up refuses to start');
    expect(refused.stderr).toContain(`encrypted with secrets key ${after.id}`);
    expect(refused.stderr).toContain('The key in use is TEMPER_SECRETS_KEY');
  }, 120_000);
});

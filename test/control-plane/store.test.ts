// The control-plane store suite, one set of cases run against every implementation: SQLite on
// a temporary file and a real PostgreSQL server started for this file
// (test/support/postgres-server.ts). Every case gets a fresh, empty database.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  GuardRefusedError,
  LATEST_VERSION,
  MIGRATIONS,
  openStore,
  SecretsKey,
  type Store,
  StoreError,
  type StoreErrorCode,
  type UsageEvent,
} from '../../src/store/index.js';
import { sleep } from '../../src/util/processes.js';
import { type LocalPostgres, startPostgres } from '../support/postgres-server.js';

/** How a suite run reaches its database engine. */
interface StoreTarget {
  name: string;
  /** The URL of a new, empty database. */
  freshUrl(): Promise<string>;
  /** Every row of a table, read around the store (to check what it really wrote). */
  rawRows(url: string, table: string): Promise<Record<string, unknown>[]>;
  /** Overwrites a resource's body around the store (what an older temper wrote). */
  rawSetBody(url: string, collection: string, id: string, body: unknown): Promise<void>;
}

const REPO_ROOT = join(import.meta.dirname, '../..');
const STORE_INDEX = pathToFileURL(join(REPO_ROOT, 'src/store/index.ts')).href;

async function expectStoreError(promise: Promise<unknown>, code: StoreErrorCode): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected a StoreError ${code}`).toBeInstanceOf(StoreError);
  expect((error as StoreError).code).toBe(code);
}

/** Migrates `url` from a separate Node process, as a second control plane would. */
function migrateInChild(url: string): Promise<void> {
  const code = `const { openStore } = await import(${JSON.stringify(STORE_INDEX)});
const store = openStore(process.env.STORE_URL);
await store.migrate();
await store.close();`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: REPO_ROOT, // where `--import tsx` resolves
      env: { ...process.env, STORE_URL: url },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (data: Buffer) => {
      stderr += data.toString();
    });
    child.once('error', reject);
    child.once('exit', (status) =>
      status === 0 ? resolve() : reject(new Error(`child migrate exited ${status}:\n${stderr}`)),
    );
  });
}

function storeSuite(target: StoreTarget): void {
  describe(`store on ${target.name}`, () => {
    let url = '';
    let store: Store;
    const opened: Store[] = [];

    /** Another connection (pool) to the same database, closed after the case. */
    function openAnother(): Store {
      const another = openStore(url);
      opened.push(another);
      return another;
    }

    beforeEach(async () => {
      url = await target.freshUrl();
      store = openAnother();
      await store.migrate();
    });

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });

    describe('migrations', () => {
      it('records every migration once, and a second migrate changes nothing', async () => {
        await store.migrate();
        await openAnother().migrate();
        const rows = await target.rawRows(url, 'schema_migrations');
        expect(rows.map((r) => Number(r.version)).sort((a, b) => a - b)).toEqual(
          MIGRATIONS.map((m) => m.version),
        );
        expect(LATEST_VERSION).toBe(MIGRATIONS.length);
      });

      it('migrates once when several connections and processes migrate a new database together', async () => {
        url = await target.freshUrl();
        const stores = [openAnother(), openAnother(), openAnother()];
        await Promise.all([
          ...stores.map((s) => s.migrate()),
          migrateInChild(url),
          migrateInChild(url),
        ]);
        const rows = await target.rawRows(url, 'schema_migrations');
        expect(rows).toHaveLength(MIGRATIONS.length);
        const created = await stores[0]!.create('models', 'acme', 'after-migrate', { ok: true });
        expect(created.version).toBe(1);
      }, 60_000);
    });

    describe('secrets at rest', () => {
      const PLAIN = 'hunter2-plaintext-value-7f3a';
      const key = SecretsKey.generate().key;

      function keyed(secretsKey: SecretsKey | undefined): Store {
        const s = openStore(url, secretsKey ? { secretsKey } : {});
        opened.push(s);
        return s;
      }

      it('stores only ciphertext, bound to the secret, and gives callers the value', async () => {
        const s = keyed(key);
        await s.migrate();
        const created = await s.create('secrets', 'acme', 'api-key', {
          keyName: 'API_KEY',
          value: PLAIN,
        });
        expect(created.body).toEqual({ keyName: 'API_KEY', value: PLAIN });
        const updated = await s.update<{ value: string }>('secrets', 'acme', 'api-key', (b) => ({
          ...b,
          value: `${PLAIN}-2`,
        }));
        expect(updated.body.value).toBe(`${PLAIN}-2`);
        expect((await s.get('secrets', 'acme', 'api-key'))?.body).toEqual({
          keyName: 'API_KEY',
          value: `${PLAIN}-2`,
        });
        expect((await s.list('secrets', 'acme')).items[0]?.body).toMatchObject({
          value: `${PLAIN}-2`,
        });
        const raw = JSON.stringify(await target.rawRows(url, 'resources'));
        expect(raw).not.toContain(PLAIN);
        expect(raw).toContain(key.id);
        // Other collections are stored as given.
        await s.create('models', 'acme', 'm', { value: PLAIN });
        expect(JSON.stringify(await target.rawRows(url, 'resources'))).toContain(PLAIN);
        // Without the key a sealed secret is refused, not returned sealed.
        await expectStoreError(
          keyed(undefined).get('secrets', 'acme', 'api-key'),
          'failed_precondition',
        );
      });

      it('refuses to start with another key or none, seals old plain values, and rotates', async () => {
        const legacy = keyed(undefined);
        // Without a key nothing can be written as a secret...
        await expectStoreError(
          legacy.create('secrets', 'acme', 'refused', { keyName: 'K', value: PLAIN }),
          'failed_precondition',
        );
        await legacy.create('secrets', 'acme', 'no-value', { keyName: 'OLD' });
        const first = keyed(key);
        await first.migrate();
        await first.create('secrets', 'acme', 'new', { keyName: 'NEW', value: PLAIN });
        expect(JSON.stringify(await target.rawRows(url, 'resources'))).not.toContain(PLAIN);

        const wrong = SecretsKey.generate().key;
        const refused = await keyed(wrong)
          .migrate()
          .catch((e: unknown) => e as StoreError);
        expect(refused).toBeInstanceOf(StoreError);
        expect((refused as StoreError).message).toMatch(
          new RegExp(`encrypted with secrets key ${key.id}, but this temper has key ${wrong.id}`),
        );
        await expectStoreError(keyed(undefined).migrate(), 'failed_precondition');

        // Rotation: the data keys are re-wrapped; only the new key opens them afterwards.
        // One sealed value ('no-value' holds none).
        expect(await first.rewrapSecrets(wrong)).toBe(1);
        const rotated = keyed(wrong);
        await rotated.migrate();
        expect((await rotated.get<{ value: string }>('secrets', 'acme', 'new'))?.body.value).toBe(
          PLAIN,
        );
        await expectStoreError(keyed(key).migrate(), 'failed_precondition');
      });
    });

    describe('trainer tokens at rest', () => {
      const TOKEN = 'pod-token-7Hq2xN9vLr4Kw8Zp3Ys6Tb1Fc5Gd0Je2Mh7Ua9Vi4Xo';
      const key = SecretsKey.generate().key;
      type Job = { state: string; trainerToken?: string | null };

      function keyed(secretsKey: SecretsKey | undefined): Store {
        const s = openStore(url, secretsKey ? { secretsKey } : {});
        opened.push(s);
        return s;
      }
      const rawText = async () => JSON.stringify(await target.rawRows(url, 'resources'));

      it('seals the token on write, gives it back on read, and drops it when withdrawn', async () => {
        const s = keyed(key);
        await s.migrate();
        await s.create('rlorTrainerJobs', 'acme', 'tr', { state: 'JOB_STATE_PENDING' });
        const written = await s.update<Job>('rlorTrainerJobs', 'acme', 'tr', (b) => ({
          ...b,
          trainerToken: TOKEN,
        }));
        expect(written.body.trainerToken).toBe(TOKEN);
        // A later write of other fields keeps the token (sealed afresh).
        await s.update<Job>('rlorTrainerJobs', 'acme', 'tr', (b) => ({
          ...b,
          state: 'JOB_STATE_RUNNING',
        }));
        expect((await s.get<Job>('rlorTrainerJobs', 'acme', 'tr'))?.body).toEqual({
          state: 'JOB_STATE_RUNNING',
          trainerToken: TOKEN,
        });
        expect((await s.list<Job>('rlorTrainerJobs', 'acme')).items[0]?.body.trainerToken).toBe(
          TOKEN,
        );
        const [row] = await target.rawRows(url, 'resources');
        const stored = typeof row!.body === 'string' ? JSON.parse(row!.body) : row!.body;
        expect(stored).not.toHaveProperty('trainerToken');
        expect(stored.sealedTrainerToken).toMatchObject({ v: 1, kid: key.id });
        expect(await rawText()).not.toContain(TOKEN);

        await s.update<Job>('rlorTrainerJobs', 'acme', 'tr', (b) => ({
          ...b,
          state: 'JOB_STATE_COMPLETED',
          trainerToken: null,
        }));
        const [ended] = await target.rawRows(url, 'resources');
        const endedBody = typeof ended!.body === 'string' ? JSON.parse(ended!.body) : ended!.body;
        expect(endedBody).toEqual({ state: 'JOB_STATE_COMPLETED', trainerToken: null });
        // The job has ended: the guard refuses, with its own error.
        const refused = await s
          .update<Job>('rlorTrainerJobs', 'acme', 'tr', (b) => b, {
            unless: { field: 'state', values: ['JOB_STATE_COMPLETED'] },
          })
          .catch((e: unknown) => e);
        expect(refused).toBeInstanceOf(GuardRefusedError);
      });

      it('without a key refuses to store a token (not a guard refusal) but keeps tokenless jobs', async () => {
        const s = keyed(undefined);
        await s.migrate();
        await s.create('rlorTrainerJobs', 'acme', 'tr', { state: 'JOB_STATE_PENDING' });
        const error = await s
          .update<Job>('rlorTrainerJobs', 'acme', 'tr', (b) => ({ ...b, trainerToken: TOKEN }), {
            unless: { field: 'state', values: ['JOB_STATE_COMPLETED'] },
          })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(StoreError);
        expect(error).not.toBeInstanceOf(GuardRefusedError);
        expect((error as StoreError).message).toMatch(
          /cannot store the trainer token of accounts\/acme\/rlorTrainerJobs\/tr: this temper has no secrets key/,
        );
        expect((await s.get<Job>('rlorTrainerJobs', 'acme', 'tr'))?.body).toEqual({
          state: 'JOB_STATE_PENDING',
        });
        await s.update<Job>('rlorTrainerJobs', 'acme', 'tr', (b) => ({ ...b, trainerToken: null }));
      });

      it('seals tokens an older temper stored in clear at migrate, and rotates them', async () => {
        const legacy = keyed(undefined);
        await legacy.create('rlorTrainerJobs', 'acme', 'old', { state: 'JOB_STATE_PENDING' });
        await legacy.create('rlorTrainerJobs', 'acme', 'ended', { state: 'JOB_STATE_PENDING' });
        await target.rawSetBody(url, 'rlorTrainerJobs', 'old', {
          state: 'JOB_STATE_RUNNING',
          trainerAddress: '127.0.0.1:4000',
          trainerToken: TOKEN,
        });
        await target.rawSetBody(url, 'rlorTrainerJobs', 'ended', {
          state: 'JOB_STATE_COMPLETED',
          trainerToken: null,
        });
        // A keyless temper leaves the clear token as it is (and still reads it)...
        await legacy.migrate();
        expect(await rawText()).toContain(TOKEN);
        // ...the first one with a key seals it.
        const first = keyed(key);
        await first.migrate();
        expect(await rawText()).not.toContain(TOKEN);
        expect((await first.get<Job>('rlorTrainerJobs', 'acme', 'old'))?.body).toEqual({
          state: 'JOB_STATE_RUNNING',
          trainerAddress: '127.0.0.1:4000',
          trainerToken: TOKEN,
        });
        expect((await first.get<Job>('rlorTrainerJobs', 'acme', 'ended'))?.body).toEqual({
          state: 'JOB_STATE_COMPLETED',
          trainerToken: null,
        });
        // From now on a keyless temper refuses to start on it; rotation moves the token too.
        await expectStoreError(keyed(undefined).migrate(), 'failed_precondition');
        const next = SecretsKey.generate().key;
        expect(await first.rewrapSecrets(next)).toBe(1);
        await expectStoreError(keyed(key).migrate(), 'failed_precondition');
        const rotated = keyed(next);
        await rotated.migrate();
        expect((await rotated.get<Job>('rlorTrainerJobs', 'acme', 'old'))?.body.trainerToken).toBe(
          TOKEN,
        );
      });
    });

    describe('resources', () => {
      it('creates and gets a resource with name, version 1 and RFC 3339 times', async () => {
        const before = Date.now();
        const created = await store.create('datasets', 'acme', 'chat-logs', { exampleCount: 3 });
        expect(created).toMatchObject({
          account: 'acme',
          collection: 'datasets',
          id: 'chat-logs',
          name: 'accounts/acme/datasets/chat-logs',
          body: { exampleCount: 3 },
          version: 1,
        });
        expect(created.createTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        expect(Date.parse(created.createTime)).toBeGreaterThanOrEqual(before - 1);
        expect(created.updateTime).toBe(created.createTime);
        expect(await store.get('datasets', 'acme', 'chat-logs')).toEqual(created);
        expect(await store.get('datasets', 'acme', 'missing')).toBeUndefined();
        expect(await store.get('models', 'acme', 'chat-logs')).toBeUndefined();
      });

      it('refuses a second create of the same name with already_exists and keeps the first body', async () => {
        await store.create('models', 'acme', 'm1', { v: 'first' });
        await expectStoreError(
          store.create('models', 'acme', 'm1', { v: 'second' }),
          'already_exists',
        );
        expect((await store.get('models', 'acme', 'm1'))?.body).toEqual({ v: 'first' });
        // The same id in another collection is another resource.
        await store.create('deployments', 'acme', 'm1', { v: 'other' });
      });

      it('refuses invalid ids, accounts and collections', async () => {
        for (const id of [
          '',
          'Upper',
          '1starts-with-digit',
          'ends-',
          'has_underscore',
          'a'.repeat(64),
        ])
          await expectStoreError(store.create('models', 'acme', id, {}), 'invalid_argument');
        await expectStoreError(store.create('models', 'Acme', 'ok', {}), 'invalid_argument');
        await expectStoreError(
          store.create('nonsense' as 'models', 'acme', 'ok', {}),
          'invalid_argument',
        );
        await expectStoreError(store.list('nonsense' as 'models', 'acme'), 'invalid_argument');
        expect(await store.create('models', 'acme', `a${'b'.repeat(62)}`, {})).toBeDefined();
      });

      it('lists oldest first in pages of 1 to 200 with opaque tokens', async () => {
        const ids: string[] = [];
        for (const i of [5, 3, 9, 1, 7, 2, 8]) {
          ids.push(`job-${i}`);
          await store.create('dpoJobs', 'acme', `job-${i}`, { i });
          await sleep(2); // distinct create times, so the order is by time and not by id
        }
        await store.create('dpoJobs', 'other', 'job-0', {});
        for (const pageSize of [1, 2, 3, 6, 7, 200]) {
          const seen: string[] = [];
          let pageToken: string | undefined;
          let pages = 0;
          do {
            const page = await store.list('dpoJobs', 'acme', { pageSize, pageToken });
            expect(page.items.length).toBeLessThanOrEqual(pageSize);
            seen.push(...page.items.map((r) => r.id));
            pageToken = page.nextPageToken;
            pages++;
          } while (pageToken !== undefined);
          expect(seen, `pageSize ${pageSize}`).toEqual(ids);
          expect(pages).toBe(Math.max(1, Math.ceil(ids.length / pageSize)));
        }
        const empty = await store.list('dpoJobs', 'nobody');
        expect(empty).toEqual({ items: [] });
      });

      it('pages by (create time, id) with a default page size of 50, and a token survives new rows', async () => {
        const ids = Array.from({ length: 55 }, (_, i) => `r-${String(i).padStart(2, '0')}`);
        // Created together, so many share a millisecond: ties are broken by id.
        await Promise.all(ids.map((id) => store.create('evaluators', 'acme', id, { id })));
        const first = await store.list('evaluators', 'acme');
        expect(first.items).toHaveLength(50);
        expect(first.nextPageToken).toMatch(/^[A-Za-z0-9_-]+$/);
        await sleep(2);
        await store.create('evaluators', 'acme', 'zz-late', {});
        const second = await store.list('evaluators', 'acme', { pageToken: first.nextPageToken });
        expect(second.nextPageToken).toBeUndefined();
        const all = [...first.items, ...second.items];
        expect(all).toHaveLength(56);
        expect(all[55]?.id).toBe('zz-late');
        const keys = all.map((r) => `${r.createTime} ${r.id}`);
        expect(keys).toEqual([...keys].sort());
        expect(new Set(all.map((r) => r.id)).size).toBe(56);
      });

      it('refuses page sizes outside 1-200 and tokens it did not issue', async () => {
        for (const pageSize of [0, 201, 1.5, -1])
          await expectStoreError(store.list('models', 'acme', { pageSize }), 'invalid_argument');
        for (const pageToken of ['garbage!', Buffer.from('[1,2]').toString('base64url'), 'e30'])
          await expectStoreError(store.list('models', 'acme', { pageToken }), 'invalid_argument');
      });

      it('updates with a version bump, checks expectVersion, and answers not_found', async () => {
        const created = await store.create('supervisedFineTuningJobs', 'acme', 'j', {
          state: 'PENDING',
        });
        await sleep(2);
        const running = await store.update<{ state: string }>(
          'supervisedFineTuningJobs',
          'acme',
          'j',
          (body) => ({ ...body, state: 'RUNNING' }),
        );
        expect(running.version).toBe(2);
        expect(running.body).toEqual({ state: 'RUNNING' });
        expect(running.createTime).toBe(created.createTime);
        expect(running.updateTime > created.updateTime).toBe(true);
        const done = await store.update<{ state: string }>(
          'supervisedFineTuningJobs',
          'acme',
          'j',
          () => ({ state: 'COMPLETED' }),
          { expectVersion: 2 },
        );
        expect(done.version).toBe(3);
        await expectStoreError(
          store.update('supervisedFineTuningJobs', 'acme', 'j', () => ({ state: 'X' }), {
            expectVersion: 2,
          }),
          'conflict',
        );
        await expectStoreError(
          store.update('supervisedFineTuningJobs', 'acme', 'nope', (b) => b),
          'not_found',
        );
        expect(await store.get('supervisedFineTuningJobs', 'acme', 'j')).toEqual(done);
      });

      it('never lets a guarded update overwrite a final state, even racing from another connection', async () => {
        const FINAL = ['COMPLETED', 'CANCELLED'];
        const unless = { field: 'state', values: FINAL };
        await store.create('supervisedFineTuningJobs', 'acme', 'race', { state: 'RUNNING', n: 0 });
        const other = openAnother();
        // Progress writes from another connection race one final write from this one.
        const progress = Array.from({ length: 40 }, (_, i) =>
          other
            .update<{ state: string; n: number }>(
              'supervisedFineTuningJobs',
              'acme',
              'race',
              (body) => ({ ...body, state: 'RUNNING', n: i + 1 }),
              { unless },
            )
            .then(
              () => 'applied',
              (e: unknown) => (e as StoreError).code,
            ),
        );
        await sleep(1);
        const cancelled = await store.update<{ state: string; n: number }>(
          'supervisedFineTuningJobs',
          'acme',
          'race',
          (body) => ({ ...body, state: 'CANCELLED' }),
          { unless },
        );
        const outcomes = await Promise.all(progress);
        expect(outcomes.every((o) => o === 'applied' || o === 'failed_precondition')).toBe(true);
        const after = await store.get<{ state: string; n: number }>(
          'supervisedFineTuningJobs',
          'acme',
          'race',
        );
        expect(after?.body.state).toBe('CANCELLED');
        // Every write that landed did so before the final one: the version counts them.
        const applied = outcomes.filter((o) => o === 'applied').length;
        expect(after?.version).toBe(1 + applied + 1);
        expect(cancelled.version).toBe(after?.version);
        // Once final, a guarded write fails and changes nothing; an unguarded one (resume) works.
        await expectStoreError(
          store.update('supervisedFineTuningJobs', 'acme', 'race', (b) => b, { unless }),
          'failed_precondition',
        );
        expect((await store.get('supervisedFineTuningJobs', 'acme', 'race'))?.version).toBe(
          after?.version,
        );
        const resumed = await store.update<{ state: string }>(
          'supervisedFineTuningJobs',
          'acme',
          'race',
          (b) => ({ ...b, state: 'PENDING' }),
        );
        expect(resumed.body.state).toBe('PENDING');
      });

      it('leaves the row untouched when mutate throws or returns something unstorable', async () => {
        const created = await store.create('models', 'acme', 'm', { n: 1 });
        await expect(
          store.update('models', 'acme', 'm', () => {
            throw new Error('mutate failed');
          }),
        ).rejects.toThrow('mutate failed');
        await expectStoreError(
          store.update('models', 'acme', 'm', (async () => ({ n: 2 })) as unknown as (
            b: unknown,
          ) => unknown),
          'invalid_argument',
        );
        await expectStoreError(
          store.update('models', 'acme', 'm', () => undefined),
          'invalid_argument',
        );
        expect(await store.get('models', 'acme', 'm')).toEqual(created);
      });

      it('deletes a resource and its metrics, and only those', async () => {
        await store.create('reinforcementFineTuningJobs', 'acme', 'gone', {});
        await store.create('reinforcementFineTuningJobs', 'acme', 'kept', {});
        const time = new Date().toISOString();
        await store.putMetrics('accounts/acme/reinforcementFineTuningJobs/gone', [
          { step: 1, values: { 'reward:mean': 0.5 }, time },
        ]);
        await store.putMetrics('accounts/acme/reinforcementFineTuningJobs/kept', [
          { step: 1, values: { 'reward:mean': 0.7 }, time },
        ]);
        expect(await store.delete('reinforcementFineTuningJobs', 'acme', 'gone')).toBe(true);
        expect(await store.get('reinforcementFineTuningJobs', 'acme', 'gone')).toBeUndefined();
        expect(await store.listMetrics('accounts/acme/reinforcementFineTuningJobs/gone')).toEqual(
          [],
        );
        expect(
          await store.listMetrics('accounts/acme/reinforcementFineTuningJobs/kept'),
        ).toHaveLength(1);
        expect(await store.delete('reinforcementFineTuningJobs', 'acme', 'gone')).toBe(false);
        expect(await store.get('reinforcementFineTuningJobs', 'acme', 'kept')).toBeDefined();
        // The name is free again.
        expect(
          (await store.create('reinforcementFineTuningJobs', 'acme', 'gone', {})).version,
        ).toBe(1);
      });

      it('counts a collection by a body field over every account (jobs by state)', async () => {
        await store.create('dpoJobs', 'alice', 'a', { state: 'JOB_STATE_RUNNING' });
        await store.create('dpoJobs', 'bob', 'b', { state: 'JOB_STATE_RUNNING' });
        await store.create('dpoJobs', 'bob', 'c', { state: 'JOB_STATE_COMPLETED' });
        await store.create('dpoJobs', 'bob', 'd', {});
        await store.create('rlorTrainerJobs', 'bob', 'e', { state: 'JOB_STATE_FAILED' });
        expect(await store.countBy('dpoJobs', 'state')).toEqual([
          { value: '', count: 1 },
          { value: 'JOB_STATE_COMPLETED', count: 1 },
          { value: 'JOB_STATE_RUNNING', count: 2 },
        ]);
        expect(await store.countBy('supervisedFineTuningJobs', 'state')).toEqual([]);
        await expect(store.countBy('dpoJobs', "state') OR 1=1 --")).rejects.toMatchObject({
          code: 'invalid_argument',
        });
      });

      it('keeps accounts apart: the same id in two accounts is two resources', async () => {
        await store.create('secrets', 'alice', 'token', { owner: 'alice' });
        await store.create('secrets', 'bob', 'token', { owner: 'bob' });
        await store.update<{ owner: string }>('secrets', 'alice', 'token', (b) => ({
          ...b,
          touched: true,
        }));
        expect((await store.get('secrets', 'bob', 'token'))?.body).toEqual({ owner: 'bob' });
        expect((await store.get('secrets', 'bob', 'token'))?.version).toBe(1);
        expect((await store.list('secrets', 'alice')).items.map((r) => r.body)).toEqual([
          { owner: 'alice', touched: true },
        ]);
        expect(await store.delete('secrets', 'bob', 'token')).toBe(true);
        expect((await store.get('secrets', 'alice', 'token'))?.version).toBe(2);
        expect(await store.get('secrets', 'bob', 'token')).toBeUndefined();
      });

      it('loses no update when 20 increments race on one row, from one connection and from two', async () => {
        await store.create('rlorTrainerJobs', 'acme', 'counter', { n: 0 });
        const increment = (s: Store) =>
          s.update<{ n: number }>('rlorTrainerJobs', 'acme', 'counter', (b) => ({ n: b.n + 1 }));
        await Promise.all(Array.from({ length: 20 }, () => increment(store)));
        let row = await store.get<{ n: number }>('rlorTrainerJobs', 'acme', 'counter');
        expect(row?.body.n).toBe(20);
        expect(row?.version).toBe(21);
        const other = openAnother();
        await Promise.all(Array.from({ length: 20 }, (_, i) => increment(i % 2 ? store : other)));
        row = await store.get<{ n: number }>('rlorTrainerJobs', 'acme', 'counter');
        expect(row?.body.n).toBe(40);
        expect(row?.version).toBe(41);
      });

      it('round-trips JSON bodies with unicode and nesting (deep-equal; JSONB may reorder keys)', async () => {
        const body = {
          text: 'Grüße, 你好, مرحبا, नमस्ते, 🙂👩‍👩‍👧 e\u0301',
          escapes: 'quote " backslash \\ newline \n tab \t \\u0000 as text',
          'ключ 🔑': ['a', 1, 2.5, -3, 1e21, 0.1, 12345678901234, true, false, null, '', {}, []],
          nested: { deeper: { deepest: [{ x: [[1, [2, [3]]]] }, { y: { z: 'ok' } }] } },
          empty: {},
        };
        const created = await store.create('datasets', 'acme', 'unicode', body);
        expect(created.body).toStrictEqual(body);
        expect((await store.get('datasets', 'acme', 'unicode'))?.body).toStrictEqual(body);
        expect((await store.list('datasets', 'acme')).items[0]?.body).toStrictEqual(body);
        const updated = await store.update('datasets', 'acme', 'unicode', (b) => b);
        expect(updated.body).toStrictEqual(body);
        // What PostgreSQL's JSONB cannot hold is refused on every dialect alike.
        await expectStoreError(
          store.create('datasets', 'acme', 'nul', { s: 'a\u0000b' }),
          'invalid_argument',
        );
        await expectStoreError(
          store.create('datasets', 'acme', 'sur', { s: 'a\ud800b' }),
          'invalid_argument',
        );
      });
    });

    describe('accounts and API keys', () => {
      it('creates accounts idempotently', async () => {
        expect(await store.accountExists('acme')).toBe(false);
        await store.ensureAccount('acme', 'Acme Inc.');
        await store.ensureAccount('acme');
        expect(await store.accountExists('acme')).toBe(true);
        const rows = await target.rawRows(url, 'accounts');
        expect(rows).toHaveLength(1);
        expect(rows[0]?.display_name).toBe('Acme Inc.');
        await expectStoreError(store.ensureAccount('Not Valid'), 'invalid_argument');
      });

      it('issues, resolves, lists and deletes keys, storing only the SHA-256 of the secret', async () => {
        await store.ensureAccount('acme');
        await store.ensureAccount('other');
        const { key, secret } = await store.createApiKey('acme', 'ci');
        expect(secret).toMatch(/^tmp_[A-Za-z0-9_-]{43}$/);
        expect(key).toMatchObject({ account: 'acme', displayName: 'ci' });
        const second = await store.createApiKey('acme');
        const foreign = await store.createApiKey('other', 'theirs');
        expect(new Set([key.keyId, second.key.keyId, foreign.key.keyId]).size).toBe(3);

        expect(await store.resolveApiKey(secret)).toEqual(key);
        expect(await store.resolveApiKey(foreign.secret)).toEqual(foreign.key);
        expect(await store.resolveApiKey(`${secret.slice(0, -1)}x`)).toBeUndefined();
        expect(await store.resolveApiKey('')).toBeUndefined();
        expect(await store.resolveApiKey('Bearer nonsense')).toBeUndefined();
        expect((await store.listApiKeys('acme')).map((k) => k.keyId).sort()).toEqual(
          [key.keyId, second.key.keyId].sort(),
        );

        const raw = await target.rawRows(url, 'api_keys');
        expect(raw).toHaveLength(3);
        const sha = createHash('sha256').update(secret).digest('hex');
        expect(raw.find((r) => r.key_id === key.keyId)?.secret_sha256).toBe(sha);
        for (const row of raw)
          for (const value of Object.values(row)) {
            const text = value instanceof Date ? value.toISOString() : String(value);
            for (const s of [secret, second.secret, foreign.secret]) {
              expect(text).not.toContain(s);
              expect(text).not.toContain(s.slice(4));
            }
          }

        expect(await store.deleteApiKey('other', key.keyId)).toBe(false);
        expect(await store.deleteApiKey('acme', key.keyId)).toBe(true);
        expect(await store.deleteApiKey('acme', key.keyId)).toBe(false);
        expect(await store.resolveApiKey(secret)).toBeUndefined();
        expect(await store.resolveApiKey(second.secret)).toEqual(second.key);
        expect(await store.listApiKeys('acme')).toEqual([second.key]);
      });

      it('reads an account with its display name', async () => {
        await store.ensureAccount('acme', 'ops@acme.example');
        expect(await store.getAccount('acme')).toMatchObject({
          account: 'acme',
          displayName: 'ops@acme.example',
        });
        expect((await store.getAccount('acme'))?.createTime).toMatch(/Z$/);
        expect(await store.getAccount('ghost')).toBeUndefined();
      });

      it('refuses a key for an account that does not exist', async () => {
        await expectStoreError(store.createApiKey('ghost'), 'not_found');
        expect(await target.rawRows(url, 'api_keys')).toEqual([]);
      });
    });

    describe('metrics', () => {
      const job = 'accounts/acme/supervisedFineTuningJobs/j';
      const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

      it('appends, replaces a re-reported step, and lists in step order with afterStep and limit', async () => {
        await store.putMetrics(job, [
          { step: 3, values: { 'loss:mean': 0.3 }, time: at(3) },
          { step: 1, values: { 'loss:mean': 0.9, note: 'warmup', extra: null }, time: at(1) },
          { step: 2, values: { 'loss:mean': 0.5 }, time: at(2) },
        ]);
        await store.putMetrics(job, [
          { step: 2, values: { 'loss:mean': 0.45, resumed: 1 }, time: at(20) },
          { step: 4, values: { 'loss:mean': 0.2 }, time: at(4) },
        ]);
        await store.putMetrics('accounts/acme/supervisedFineTuningJobs/other', [
          { step: 1, values: { 'loss:mean': 7 }, time: at(1) },
        ]);
        const all = await store.listMetrics(job);
        expect(all).toEqual([
          { step: 1, values: { 'loss:mean': 0.9, note: 'warmup', extra: null }, time: at(1) },
          { step: 2, values: { 'loss:mean': 0.45, resumed: 1 }, time: at(20) },
          { step: 3, values: { 'loss:mean': 0.3 }, time: at(3) },
          { step: 4, values: { 'loss:mean': 0.2 }, time: at(4) },
        ]);
        expect((await store.listMetrics(job, { afterStep: 2 })).map((r) => r.step)).toEqual([3, 4]);
        expect((await store.listMetrics(job, { limit: 2 })).map((r) => r.step)).toEqual([1, 2]);
        expect(
          (await store.listMetrics(job, { afterStep: 1, limit: 2 })).map((r) => r.step),
        ).toEqual([2, 3]);
        expect(await store.listMetrics(job, { afterStep: 4 })).toEqual([]);
        expect(await store.listMetrics('accounts/acme/supervisedFineTuningJobs/none')).toEqual([]);
      });

      it('keeps the last row of a step reported twice in one call, normalises times, refuses bad rows', async () => {
        await store.putMetrics(job, [
          { step: 7, values: { a: 1 }, time: '2026-01-01T01:00:00+01:00' },
          { step: 7, values: { a: 2 }, time: '2026-01-01T00:00:00.5Z' },
        ]);
        expect(await store.listMetrics(job)).toEqual([
          { step: 7, values: { a: 2 }, time: '2026-01-01T00:00:00.500Z' },
        ]);
        await store.putMetrics(job, []);
        const time = at(0);
        await expectStoreError(
          store.putMetrics(job, [{ step: -1, values: {}, time }]),
          'invalid_argument',
        );
        await expectStoreError(
          store.putMetrics(job, [{ step: 1.5, values: {}, time }]),
          'invalid_argument',
        );
        await expectStoreError(
          store.putMetrics(job, [{ step: 1, values: {}, time: 'yesterday' }]),
          'invalid_argument',
        );
        await expectStoreError(store.listMetrics(job, { limit: 0 }), 'invalid_argument');
        expect(await store.listMetrics(job)).toHaveLength(1);
      });
    });

    describe('deployments', () => {
      const spec = (n: number) => ({
        request: { deploymentId: `d${n}`, nested: [n, { ok: true }] },
      });
      it('upserts rows by name, lists every account oldest first, deletes', async () => {
        await store.putDeployment({
          name: 'accounts/acme/deployments/d1',
          account: 'acme',
          spec: spec(1),
        });
        await store.putDeployment({
          name: 'accounts/bob/deployments/d2',
          account: 'bob',
          spec: spec(2),
        });
        // a second put of a name replaces its spec and keeps its place
        await openAnother().putDeployment({
          name: 'accounts/acme/deployments/d1',
          account: 'acme',
          spec: spec(3),
        });
        expect(await store.listDeployments()).toEqual([
          { name: 'accounts/acme/deployments/d1', account: 'acme', spec: spec(3) },
          { name: 'accounts/bob/deployments/d2', account: 'bob', spec: spec(2) },
        ]);
        expect(await store.deleteDeployment('accounts/acme/deployments/d1')).toBe(true);
        expect(await store.deleteDeployment('accounts/acme/deployments/d1')).toBe(false);
        expect((await openAnother().listDeployments()).map((d) => d.name)).toEqual([
          'accounts/bob/deployments/d2',
        ]);
      });

      it("refuses a name outside its account's deployments", async () => {
        await expectStoreError(
          store.putDeployment({ name: 'accounts/bob/deployments/d1', account: 'acme', spec: {} }),
          'invalid_argument',
        );
        await expectStoreError(
          store.putDeployment({
            name: 'accounts/acme/deployments/Bad_Id',
            account: 'acme',
            spec: {},
          }),
          'invalid_argument',
        );
        expect(await store.listDeployments()).toEqual([]);
      });
    });

    describe('usage events', () => {
      const at = (day: number, s = 0) => new Date(Date.UTC(2025, 9, day, 17, 16, s)).toISOString();
      const training: UsageEvent = {
        id: 'sft-1-segment-0',
        account: 'acme',
        startTime: at(20),
        endTime: at(20, 48),
        usageType: 'FINE_TUNING_USAGE',
        acceleratorType: 'CPU',
        acceleratorSeconds: 48.25,
        baseModelName: 'accounts/temper/models/byte-lm-3m',
        parameterCount: 3_000_000,
        source: 'accounts/acme/supervisedFineTuningJobs/sft-1',
      };
      const inference: UsageEvent = {
        id: 'rollout-1',
        account: 'acme',
        startTime: at(19),
        endTime: at(19),
        usageType: 'TEXT_COMPLETION_INFERENCE_USAGE',
        baseModelName: 'accounts/fireworks/models/llama4-maverick-instruct-basic',
        modelBucket: 'Llama 4 Maverick Basic',
        parameterCount: 401_583_781_376,
        promptTokens: 803,
        completionTokens: 109,
      };
      const october = { startTime: at(1), endTime: at(31) };

      it('records events and lists one account in [start, end), oldest first, absent fields absent', async () => {
        const other = { ...inference, id: 'bob-1', account: 'bob' };
        await store.recordUsage([training, inference, other]);
        expect(await store.listUsage('acme', october)).toEqual([inference, training]);
        expect(Object.keys((await store.listUsage('acme', october))[0]!)).not.toContain(
          'acceleratorSeconds',
        );
        expect(await store.listUsage('bob', october)).toEqual([other]);
        // Half-open: an event starting exactly at the end is out, one at the start is in.
        expect(await store.listUsage('acme', { startTime: at(19), endTime: at(20) })).toEqual([
          inference,
        ]);
        expect(
          await store.listUsage('acme', {
            startTime: '2025-10-20T19:16:00+02:00',
            endTime: at(21),
          }),
        ).toEqual([training]);
        expect(await store.listUsage('acme', { startTime: at(21), endTime: at(22) })).toEqual([]);
        expect(await target.rawRows(url, 'usage_events')).toHaveLength(3);
      });

      it('skips ids already recorded (a retried activity meters once) and orders ties by id', async () => {
        await store.recordUsage([training]);
        await store.recordUsage([
          { ...training, acceleratorSeconds: 999 },
          { ...training, id: 'sft-1-segment-1', startTime: training.startTime },
          { ...training, id: 'sft-1-segment-1', acceleratorSeconds: 7 },
        ]);
        const rows = await store.listUsage('acme', october);
        expect(rows.map((r) => [r.id, r.acceleratorSeconds])).toEqual([
          ['sft-1-segment-0', 48.25],
          ['sft-1-segment-1', 48.25],
        ]);
        await store.recordUsage([]);
      });

      it('normalises times to milliseconds UTC and refuses malformed events, writing none of the batch', async () => {
        await store.recordUsage([
          {
            ...inference,
            startTime: '2025-10-19T19:16:00.5+02:00',
            endTime: '2025-10-19T17:16:01Z',
          },
        ]);
        expect((await store.listUsage('acme', october))[0]).toMatchObject({
          startTime: '2025-10-19T17:16:00.500Z',
          endTime: '2025-10-19T17:16:01.000Z',
        });
        const bad: Partial<UsageEvent>[] = [
          { id: '' },
          { account: 'Not An Id' },
          { usageType: 'fine tuning' },
          { startTime: 'yesterday' },
          { endTime: at(18) },
          { startTime: '+010000-01-01T00:00:00.000Z' },
          { promptTokens: -1 },
          { completionTokens: 1.5 },
          { acceleratorSeconds: Number.POSITIVE_INFINITY },
          { baseModelName: 'nul\0char' },
          { modelBucket: '' },
        ];
        for (const change of bad)
          await expectStoreError(
            store.recordUsage([
              { ...training, id: 'fine' },
              { ...inference, ...change },
            ]),
            'invalid_argument',
          );
        expect(await target.rawRows(url, 'usage_events')).toHaveLength(1);
        await expectStoreError(
          store.listUsage('acme', { startTime: 'soon', endTime: at(2) }),
          'invalid_argument',
        );
      });
    });
  });
}

// ---- SQLite: a temporary file per case ----

const sqliteDir = mkdtempSync(join(tmpdir(), 'temper-store-'));
let sqliteFiles = 0;
afterAll(() => rmSync(sqliteDir, { recursive: true, force: true }));

storeSuite({
  name: 'SQLite',
  freshUrl: async () => `sqlite://${join(sqliteDir, `case-${++sqliteFiles}.db`)}`,
  rawRows: async (url, table) => {
    const db = new Database(url.slice('sqlite://'.length), { readonly: true });
    try {
      return db.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[];
    } finally {
      db.close();
    }
  },
  rawSetBody: async (url, collection, id, body) => {
    const db = new Database(url.slice('sqlite://'.length));
    try {
      db.prepare('UPDATE resources SET body = ? WHERE collection = ? AND id = ?').run(
        JSON.stringify(body),
        collection,
        id,
      );
    } finally {
      db.close();
    }
  },
});

// ---- PostgreSQL: one private server for the file, a new database per case ----

describe('PostgreSQL', () => {
  let server: LocalPostgres | undefined;
  let databases = 0;

  // No server, no pass: a missing PostgreSQL fails here with the setup command to run.
  beforeAll(async () => {
    server = await startPostgres();
  });

  afterAll(async () => {
    await server?.stop();
  });

  function running(): LocalPostgres {
    if (!server) throw new Error('the PostgreSQL test server did not start (see beforeAll)');
    return server;
  }

  storeSuite({
    name: 'PostgreSQL',
    freshUrl: () => running().createDatabase(`case_${++databases}`),
    rawRows: async (url, table) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        return (await client.query(`SELECT * FROM ${table}`)).rows;
      } finally {
        await client.end();
      }
    },
    rawSetBody: async (url, collection, id, body) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query('UPDATE resources SET body = $1 WHERE collection = $2 AND id = $3', [
          JSON.stringify(body),
          collection,
          id,
        ]);
      } finally {
        await client.end();
      }
    },
  });

  it('opens postgres:// and postgresql:// URLs', async () => {
    for (const scheme of ['postgres', 'postgresql']) {
      const url = (await running().createDatabase(`scheme_${scheme}`)).replace(/^postgres/, scheme);
      const store = openStore(url);
      try {
        expect(store.dialect).toBe('postgres');
        await store.migrate();
        expect(await store.accountExists('nobody')).toBe(false);
      } finally {
        await store.close();
      }
    }
  });
});

describe('openStore', () => {
  it('opens sqlite::memory: and refuses relative paths and unknown schemes', async () => {
    const memory = openStore('sqlite::memory:');
    await memory.migrate();
    expect(memory.dialect).toBe('sqlite');
    await memory.create('models', 'acme', 'm', { ok: 1 });
    expect((await memory.get('models', 'acme', 'm'))?.body).toEqual({ ok: 1 });
    await memory.close();
    expect(() => openStore('sqlite://relative.db')).toThrow(/absolute path/);
    expect(() => openStore('mysql://user:hunter2@host/db')).toThrow(/user:\*\*\*@host/);
  });
});

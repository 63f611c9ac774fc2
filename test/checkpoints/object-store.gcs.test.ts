// The object-store conformance suite against a real GCS emulator run locally
// (fake-gcs-server, see test/support/object-store-servers.ts), through @google-cloud/storage.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emulatorEndpoint, GcsObjectStore } from '../../src/checkpoints/object-store/gcs.js';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import { type LocalObjectServer, startGcsServer } from '../support/object-store-servers.js';
import { expectStoreError, objectStoreConformance } from './object-store.suite.js';

const BUCKET = 'temper-test';
let server: LocalObjectServer | undefined;

beforeAll(async () => {
  // These tests pass the endpoint; the last one sets STORAGE_EMULATOR_HOST itself.
  delete process.env.STORAGE_EMULATOR_HOST;
  server = await startGcsServer();
  await server.createBucket(BUCKET);
});

afterAll(async () => {
  await server?.stop();
});

function apiEndpoint(): string {
  if (!server) throw new Error('GCS emulator did not start');
  return server.endpoint;
}

objectStoreConformance(
  'gs:// (fake-gcs-server)',
  (name) =>
    openObjectStore(`gs://${BUCKET}/runs/${name}`, {
      gcs: { apiEndpoint: apiEndpoint(), projectId: 'test' },
    }),
  { scheme: 'gs' },
);

describe('gs:// store specifics', () => {
  it('opens a bucket root and sees prefixed stores as sub-keys', async () => {
    const store = await openObjectStore(`gs://${BUCKET}/root-run`, {
      gcs: { apiEndpoint: apiEndpoint() },
    });
    expect(store).toBeInstanceOf(GcsObjectStore);
    await store.put('a/b', 'v');
    const root = await openObjectStore(`gs://${BUCKET}`, { gcs: { apiEndpoint: apiEndpoint() } });
    expect((await root.list('root-run/')).map((i) => i.key)).toEqual(['root-run/a/b']);
    expect((await root.get('root-run/a/b')).toString()).toBe('v');
  });

  it('a missing bucket is unavailable, not an empty store', async () => {
    const store = await openObjectStore('gs://no-such-bucket/x', {
      gcs: { apiEndpoint: apiEndpoint() },
    });
    await expectStoreError(store.put('k', 'v'), 'unavailable');
    await expectStoreError(store.list(''), 'unavailable');
  });

  it('finds the emulator STORAGE_EMULATOR_HOST names, in every form other clients accept', async () => {
    expect(emulatorEndpoint(undefined)).toBeUndefined();
    expect(emulatorEndpoint(' ')).toBeUndefined();
    expect(emulatorEndpoint('127.0.0.1:4443')).toBe('http://127.0.0.1:4443');
    expect(emulatorEndpoint('http://127.0.0.1:4443/')).toBe('http://127.0.0.1:4443');
    expect(emulatorEndpoint('https://gcs.test:4443/storage/v1/')).toBe('https://gcs.test:4443');
    const hostPort = apiEndpoint().replace(/^http:\/\//, '');
    const saved = process.env.STORAGE_EMULATOR_HOST;
    try {
      for (const form of [hostPort, `http://${hostPort}`, `http://${hostPort}/storage/v1`]) {
        process.env.STORAGE_EMULATOR_HOST = form;
        const store = await openObjectStore(`gs://${BUCKET}/emulator-host`);
        await store.put('k', form);
        expect((await store.get('k')).toString()).toBe(form);
      }
      // An explicit endpoint wins over the variable.
      process.env.STORAGE_EMULATOR_HOST = '127.0.0.1:1';
      const store = await openObjectStore(`gs://${BUCKET}/emulator-host`, {
        gcs: { apiEndpoint: apiEndpoint() },
      });
      expect((await store.get('k')).toString()).toBe(`http://${hostPort}/storage/v1`);
    } finally {
      if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
      else process.env.STORAGE_EMULATOR_HOST = saved;
    }
  });
});

// The object-store conformance suite against a real GCS emulator run locally
// (fake-gcs-server, see test/support/object-store-servers.ts), through @google-cloud/storage.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GcsObjectStore } from '../../src/checkpoints/object-store/gcs.js';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import { type LocalObjectServer, startGcsServer } from '../support/object-store-servers.js';
import { expectStoreError, objectStoreConformance } from './object-store.suite.js';

const BUCKET = 'temper-test';
let server: LocalObjectServer | undefined;

beforeAll(async () => {
  // The library prefers STORAGE_EMULATOR_HOST over apiEndpoint; these tests pass the endpoint.
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
});

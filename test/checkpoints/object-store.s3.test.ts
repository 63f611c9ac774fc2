// The object-store conformance suite against a real S3 server run locally (moto's server
// mode, see test/support/object-store-servers.ts), through @aws-sdk/client-s3.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import { S3ObjectStore } from '../../src/checkpoints/object-store/s3.js';
import { type LocalObjectServer, startS3Server } from '../support/object-store-servers.js';
import { expectStoreError, objectStoreConformance } from './object-store.suite.js';

const BUCKET = 'temper-test';
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
let server: LocalObjectServer | undefined;

beforeAll(async () => {
  server = await startS3Server();
  await server.createBucket(BUCKET);
});

afterAll(async () => {
  await server?.stop();
});

function endpoint(): string {
  if (!server) throw new Error('S3 server did not start');
  return server.endpoint;
}

// A 5 MiB part size makes the suite's 6 MiB streamed body a real two-part multipart upload.
objectStoreConformance(
  's3:// (moto server)',
  (name) =>
    openObjectStore(`s3://${BUCKET}/runs/${name}`, {
      s3: { endpoint: endpoint(), credentials, partSize: 5 * 1024 * 1024 },
    }),
  { scheme: 's3' },
);

describe('s3:// store specifics', () => {
  it('opens from a URL with the endpoint from AWS_ENDPOINT_URL_S3 and path style for local hosts', async () => {
    const saved = { ...process.env };
    try {
      process.env.AWS_ENDPOINT_URL_S3 = endpoint();
      process.env.AWS_ACCESS_KEY_ID = 'test';
      process.env.AWS_SECRET_ACCESS_KEY = 'test';
      delete process.env.AWS_REGION;
      delete process.env.AWS_DEFAULT_REGION;
      const store = await openObjectStore(`s3://${BUCKET}/env-run/`);
      expect(store).toBeInstanceOf(S3ObjectStore);
      expect(store.url).toBe(`s3://${BUCKET}/env-run`);
      await store.put('k', 'v');
      expect((await store.get('k')).toString()).toBe('v');
      const root = await openObjectStore(`s3://${BUCKET}`, {
        s3: { endpoint: endpoint(), credentials },
      });
      expect((await root.list('env-run/')).map((i) => i.key)).toEqual(['env-run/k']);
    } finally {
      process.env = saved;
    }
  });

  it('a missing bucket is unavailable, not an empty store', async () => {
    const store = await openObjectStore('s3://no-such-bucket/x', {
      s3: { endpoint: endpoint(), credentials },
    });
    const e = await expectStoreError(store.put('k', 'v'), 'unavailable');
    expect(e.message).toContain('no-such-bucket');
    await expectStoreError(store.list(''), 'unavailable');
  });

  it('leaves no multipart upload behind when a conditional multipart put loses', async () => {
    const store = (await openObjectStore(`s3://${BUCKET}/mpu`, {
      s3: { endpoint: endpoint(), credentials, partSize: 5 * 1024 * 1024 },
    })) as S3ObjectStore;
    await store.put('COMMIT', 'winner');
    const { chunked, pseudoRandomBytes } = await import('./object-store.suite.js');
    await expectStoreError(
      store.put('COMMIT', chunked(pseudoRandomBytes(11 * 1024 * 1024, 'mpu')), { ifAbsent: true }),
      'already_exists',
    );
    const { ListMultipartUploadsCommand } = await import('@aws-sdk/client-s3');
    const uploads = await store.client.send(
      new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'mpu/' }),
    );
    expect(uploads.Uploads ?? []).toEqual([]);
  });
});

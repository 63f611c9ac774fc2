// Hot-load bucket confinement (issue 14 item 2): a bucket a user names must lie in that
// account's folder of the checkpoint store or under the operator's allow-list; non-storage
// schemes (the metadata service's http URL) are refused at create with a 400 naming the rule.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bucketSettingsFromEnv,
  confineBucketUrl,
} from '../../src/control-plane/resources/bucket-urls.js';
import { type GatewayHarness, startGatewayHarness } from '../support/gateways.js';

const none = { allowedPrefixes: [] };
const message = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  return 'accepted';
};

describe('confineBucketUrl', () => {
  const S3 = 's3://platform/ckpt';
  it('accepts the account prefix of an s3 store, refuses another account and other buckets', () => {
    expect(
      confineBucketUrl(`${S3}/accounts/alice/deployments/d/snapshots`, 'alice', S3, none),
    ).toBe(`${S3}/accounts/alice/deployments/d/snapshots`);
    for (const url of [
      `${S3}/accounts/bob/rlorTrainerJobs/t/checkpoints`,
      `${S3}/accounts/alice-evil/x`,
      `${S3}/accounts/alice`,
      's3://other-bucket/anything',
      'gs://platform/ckpt/accounts/alice/x',
    ])
      expect(message(() => confineBucketUrl(url, 'alice', S3, none))).toBe(
        `hotLoadBucketUrl: ${url} is outside your account's prefix ${S3}/accounts/alice/ and the operator's allow-list (TEMPER_BUCKET_ALLOWLIST)`,
      );
  });

  it('refuses non-storage schemes, dot segments and control characters', () => {
    expect(
      message(() => confineBucketUrl('http://169.254.169.254/latest', 'alice', S3, none)),
    ).toBe(
      'hotLoadBucketUrl: http:// is not a storage URL: give s3://bucket/prefix, gs://bucket/prefix or file:///path',
    );
    expect(
      message(() => confineBucketUrl(`${S3}/accounts/alice/../bob/x`, 'alice', S3, none)),
    ).toBe('hotLoadBucketUrl must not contain . or .. segments');
    expect(
      message(() => confineBucketUrl(`${S3}/accounts/alice/a\u0000b`, 'alice', S3, none)),
    ).toBe('hotLoadBucketUrl contains a control character');
  });

  it('file:// buckets lie in the account folder of a file:// store', () => {
    expect(
      confineBucketUrl('file:///data/ckpt/accounts/alice/b', 'alice', 'file:///data/ckpt', none),
    ).toBe('file:///data/ckpt/accounts/alice/b');
    expect(
      message(() => confineBucketUrl('file:///etc', 'alice', 'file:///data/ckpt', none)),
    ).toMatch(
      /^hotLoadBucketUrl: a file:\/\/ bucket must lie under file:\/\/\/data\/ckpt\/accounts\/alice\//,
    );
  });

  it("the operator's allow-list opens named prefixes (whole segments) to every account", () => {
    const settings = bucketSettingsFromEnv({
      TEMPER_BUCKET_ALLOWLIST: 's3://shared/models/, gs://pub',
    });
    expect(settings.allowedPrefixes).toEqual(['s3://shared/models', 'gs://pub']);
    expect(confineBucketUrl('s3://shared/models/m1', 'alice', 'file:///x', settings)).toBe(
      's3://shared/models/m1',
    );
    expect(confineBucketUrl('gs://pub/a/b', 'bob', 'file:///x', settings)).toBe('gs://pub/a/b');
    expect(
      message(() =>
        confineBucketUrl('s3://shared/models-private/m', 'alice', 'file:///x', settings),
      ),
    ).toMatch(/is outside your account's prefix/);
    expect(() => bucketSettingsFromEnv({ TEMPER_BUCKET_ALLOWLIST: 'http://x/y' })).toThrow(
      /TEMPER_BUCKET_ALLOWLIST entries must be/,
    );
  });
});

describe('at create, over REST', () => {
  let h: GatewayHarness;
  beforeAll(async () => {
    h = await startGatewayHarness({ credentials: 'none' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it.each([
    ['http://169.254.169.254/latest/meta-data', /http:\/\/ is not a storage URL/],
    ['s3://someone-else/accounts/alice/x', /is outside your account's prefix/],
    ['gs://bucket/prefix', /is outside your account's prefix/],
  ])('%s is a 400 and creates nothing', async (url, why) => {
    const r = await h.call('POST', '/v1/accounts/alice/deployments?deploymentId=probe', {
      body: { baseModel: 'accounts/temper/models/byte-lm-3m', hotLoadBucketUrl: url },
    });
    expect(r.status).toBe(400);
    expect(r.json.error.message).toMatch(why);
    expect(h.registry.list('alice')).toEqual([]);
  });
});

// The envelope encryption of secrets at rest (src/store/secrets-key.ts): values
// open only with the key that wrapped their data key and only under the name they were
// sealed for; any altered byte is refused; re-wrapping keeps the value's ciphertext.
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SecretsKey, StoreError } from '../../src/store/index.js';

const NAME = 'accounts/acme/secrets/api-key';

describe('secrets key', () => {
  it('derives a per-purpose key: the same from the same key text, different otherwise', () => {
    const { key, text } = SecretsKey.generate();
    const again = SecretsKey.parse(text, 'test');
    expect(again.deriveKey('download urls').equals(key.deriveKey('download urls'))).toBe(true);
    expect(key.deriveKey('download urls')).toHaveLength(32);
    expect(key.deriveKey('download urls').equals(key.deriveKey('other'))).toBe(false);
    const other = SecretsKey.generate().key;
    expect(other.deriveKey('download urls').equals(key.deriveKey('download urls'))).toBe(false);
  });

  it('seals with a fresh data key per value and opens only under the same name', () => {
    const { key } = SecretsKey.generate();
    const a = key.seal('s3cret', NAME);
    const b = key.seal('s3cret', NAME);
    expect(a.data).not.toBe(b.data);
    expect(a.wrappedKey).not.toBe(b.wrappedKey);
    expect(key.open(a, NAME)).toBe('s3cret');
    expect(() => key.open(a, 'accounts/evil/secrets/api-key')).toThrow(/does not open/);
  });

  it('refuses altered bytes and another key, naming both key ids', () => {
    const { key } = SecretsKey.generate();
    const sealed = key.seal('s3cret', NAME);
    const data = Buffer.from(sealed.data, 'base64');
    data[data.length - 1]! ^= 1;
    expect(() => key.open({ ...sealed, data: data.toString('base64') }, NAME)).toThrow(StoreError);
    const other = SecretsKey.generate().key;
    expect(() => other.open(sealed, NAME)).toThrow(
      `encrypted with secrets key ${key.id}, but this temper has key ${other.id}`,
    );
  });

  it('re-wraps the data key for a new key without touching the value ciphertext', () => {
    const { key } = SecretsKey.generate();
    const next = SecretsKey.generate().key;
    const sealed = key.seal('s3cret', NAME);
    const moved = key.rewrap(sealed, NAME, next);
    expect(moved.data).toBe(sealed.data);
    expect(moved.kid).toBe(next.id);
    expect(next.open(moved, NAME)).toBe('s3cret');
    expect(() => key.open(moved, NAME)).toThrow(/encrypted with secrets key/);
  });

  it('reads key files, refuses malformed ones, and creates new ones 0600 without overwriting', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'temper-key-'));
    const path = join(dir, 'secrets.key');
    const made = await SecretsKey.createFile(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect((await SecretsKey.fromFile(path)).id).toBe(made.id);
    await expect(SecretsKey.createFile(path)).rejects.toThrow(/EEXIST/);
    expect(() => SecretsKey.parse('too-short', 'TEMPER_SECRETS_KEY')).toThrow(
      /TEMPER_SECRETS_KEY is not a secrets key: it must hold 32 random bytes as base64/,
    );
    await expect(SecretsKey.fromFile(join(dir, 'missing'))).rejects.toThrow(
      /cannot read the secrets key file/,
    );
  });
});

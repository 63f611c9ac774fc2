/**
 * Secrets at rest: envelope encryption with a key the operator holds.
 *
 * Every secret value is encrypted (AES-256-GCM) with a data key of its own, random per write;
 * the data key is stored wrapped (AES-256-GCM again) by the operator's key-encryption key,
 * which never enters the database. Both encryptions are bound to the secret's resource name
 * (additional authenticated data), so a sealed value copied into another account's row does
 * not open. Rotating the operator's key re-wraps the small data keys and leaves the value
 * ciphertexts as they are.
 *
 * The operator's key is 32 random bytes written as base64 (44 characters), in a key file
 * (`temper up` makes one, mode 0600, under its data directory) or in TEMPER_SECRETS_KEY. Its id
 * — an HMAC of a fixed label under the key, so it reveals nothing of the key — is stored with
 * every sealed value, which is how a store opened with the wrong key says so plainly.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { StoreError } from './types.js';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** How a sealed value sits in a secret's body, in place of `value`. */
export const sealedValueSchema = z.strictObject({
  /** Format version. */
  v: z.literal(1),
  /** Id of the operator key that wrapped the data key. */
  kid: z.string(),
  /** The data key, encrypted by the operator key: base64 of iv | tag | ciphertext. */
  wrappedKey: z.string(),
  /** The value, encrypted by the data key: base64 of iv | tag | ciphertext. */
  data: z.string(),
});
export type SealedValue = z.output<typeof sealedValueSchema>;

/** The operator's key-encryption key. */
export class SecretsKey {
  /** Short, stable and non-secret: names the key in sealed values and in error messages. */
  readonly id: string;

  private constructor(private readonly key: Buffer) {
    this.id = createHmac('sha256', key).update('temper secrets key id').digest('hex').slice(0, 16);
  }

  /** A new random key and its text form (what a key file holds). */
  static generate(): { key: SecretsKey; text: string } {
    const bytes = randomBytes(KEY_BYTES);
    return { key: new SecretsKey(bytes), text: `${bytes.toString('base64')}\n` };
  }

  /** The key from its text form; `source` names where it came from in the error. */
  static parse(text: string, source: string): SecretsKey {
    const trimmed = text.trim();
    const bytes = Buffer.from(trimmed, 'base64');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) || bytes.length !== KEY_BYTES)
      throw new StoreError(
        'invalid_argument',
        `${source} is not a secrets key: it must hold ${KEY_BYTES} random bytes as base64 (make one with: head -c 32 /dev/urandom | base64)`,
      );
    return new SecretsKey(bytes);
  }

  /** Reads a key file. */
  static async fromFile(path: string): Promise<SecretsKey> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      throw new StoreError(
        'invalid_argument',
        `cannot read the secrets key file ${path}: ${(error as Error).message}`,
      );
    }
    return SecretsKey.parse(text, `the secrets key file ${path}`);
  }

  /** Writes a new key file readable by its owner only; refuses to replace an existing file. */
  static async createFile(path: string): Promise<SecretsKey> {
    const { key, text } = SecretsKey.generate();
    await writeFile(path, text, { mode: 0o600, flag: 'wx' });
    return key;
  }

  /**
   * A key for another purpose (the control plane's download-URL signatures), the same on every
   * process holding this key and unrelated to it for anyone who does not.
   */
  deriveKey(purpose: string): Buffer {
    return createHmac('sha256', this.key).update(`temper derived key:${purpose}`).digest();
  }

  /** Encrypts `value` under a fresh data key; `name` is the secret's resource name. */
  seal(value: string, name: string): SealedValue {
    const dataKey = randomBytes(KEY_BYTES);
    return {
      v: 1,
      kid: this.id,
      wrappedKey: encrypt(this.key, dataKey, `temper data key:${name}`),
      data: encrypt(dataKey, Buffer.from(value, 'utf8'), `temper secret:${name}`),
    };
  }

  /** Decrypts a sealed value of `name`; `failed_precondition` if this key cannot open it. */
  open(sealed: SealedValue, name: string): string {
    return decrypt(this.dataKey(sealed, name), sealed.data, `temper secret:${name}`, name).toString(
      'utf8',
    );
  }

  /** The same value, its data key wrapped by `next` instead of this key. */
  rewrap(sealed: SealedValue, name: string, next: SecretsKey): SealedValue {
    const dataKey = this.dataKey(sealed, name);
    return {
      ...sealed,
      kid: next.id,
      wrappedKey: encrypt(next.key, dataKey, `temper data key:${name}`),
    };
  }

  private dataKey(sealed: SealedValue, name: string): Buffer {
    if (sealed.kid !== this.id)
      throw new StoreError(
        'failed_precondition',
        `${name} was encrypted with secrets key ${sealed.kid}, but this temper has key ${this.id}: start it with the key the secrets were written with (TEMPER_SECRETS_KEY or --secrets-key-file)`,
      );
    return decrypt(this.key, sealed.wrappedKey, `temper data key:${name}`, name);
  }
}

function encrypt(key: Buffer, plain: Buffer, aad: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
}

function decrypt(key: Buffer, text: string, aad: string, name: string): Buffer {
  const raw = Buffer.from(text, 'base64');
  try {
    if (raw.length < IV_BYTES + TAG_BYTES) throw new Error('too short');
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch {
    throw new StoreError(
      'failed_precondition',
      `the sealed value of ${name} does not open: it was altered, or moved from another secret`,
    );
  }
}

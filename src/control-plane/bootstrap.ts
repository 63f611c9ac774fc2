/**
 * First-run setup for `temper up`: make an account and an API key for it. The key's secret
 * is returned once (the store keeps only its hash).
 */
import { CATALOG_ACCOUNT } from '../catalog/bundled.js';
import type { Store } from '../store/index.js';
import { ApiError } from './http/errors.js';
import { checkId } from './http/ids.js';

export interface BootstrapResult {
  account: string;
  keyId: string;
  /** The API key to send as `Authorization: Bearer <apiKey>`; shown only now. */
  apiKey: string;
}

export async function bootstrapAccount(
  store: Store,
  account: string,
  opts: { displayName?: string; keyName?: string } = {},
): Promise<BootstrapResult> {
  checkId(account, 'account');
  if (account === CATALOG_ACCOUNT)
    throw new ApiError(
      'PERMISSION_DENIED',
      `accounts/${CATALOG_ACCOUNT} is the public read-only catalog and has no API keys`,
    );
  await store.ensureAccount(account, opts.displayName);
  const { key, secret } = await store.createApiKey(account, opts.keyName ?? 'bootstrap');
  return { account, keyId: key.keyId, apiKey: secret };
}

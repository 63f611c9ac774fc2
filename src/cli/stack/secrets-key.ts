/**
 * The operator's secrets key for a temper process: TEMPER_SECRETS_KEY (the key itself) when
 * set, else the key file of the settings (`--secrets-key-file`, TEMPER_SECRETS_KEY_FILE,
 * `<dataDir>/secrets.key`). `temper up` makes the file when there is none; the control plane
 * and workers of the multi-machine shape run without a key when none is given (they then
 * refuse to store secrets or trainer jobs' pod tokens, and refuse to start on a database that
 * holds sealed values).
 */
import { stat } from 'node:fs/promises';
import { SecretsKey } from '../../store/index.js';
import type { PlatformSettings } from './settings.js';

export const SECRETS_KEY_ENV = 'TEMPER_SECRETS_KEY';

export async function loadSecretsKey(
  settings: Pick<PlatformSettings, 'secretsKeyFile'>,
  options: { create: boolean },
  env: Record<string, string | undefined> = process.env,
): Promise<SecretsKey | undefined> {
  const inline = env[SECRETS_KEY_ENV];
  if (inline) return SecretsKey.parse(inline, SECRETS_KEY_ENV);
  const exists = await stat(settings.secretsKeyFile).then(
    () => true,
    () => false,
  );
  if (exists) return SecretsKey.fromFile(settings.secretsKeyFile);
  return options.create ? SecretsKey.createFile(settings.secretsKeyFile) : undefined;
}

/**
 * Where the CLI sends its requests and as whom: flags, then TEMPER_* environment variables,
 * then the credentials file `temper up` wrote (<data dir>/credentials.json). The account is
 * the one the key belongs to; the credentials file records it, so a key given alone must
 * come with --account (or TEMPER_ACCOUNT) unless it is the `default` account's.
 */
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { credentialsPath, defaultDataDir } from '../stack/settings.js';

export const credentialsSchema = z.object({
  apiUrl: z.string().min(1),
  apiKey: z.string().min(1),
  account: z.string().min(1),
  keyId: z.string().optional(),
  createdAt: z.string().optional(),
});
export type Credentials = z.output<typeof credentialsSchema>;

export interface Connection {
  apiUrl: string;
  apiKey: string;
  account: string;
}

export interface ConnectionFlags {
  apiUrl?: string;
  apiKey?: string;
  account?: string;
}

type Env = Record<string, string | undefined>;

/** The credentials file, or undefined when there is none (a broken one is an error). */
export async function readCredentials(path: string): Promise<Credentials | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not valid JSON: delete it and run \`temper up\` again`);
  }
  const parsed = credentialsSchema.safeParse(json);
  if (!parsed.success)
    throw new Error(`${path} is not a temper credentials file: delete it and run \`temper up\``);
  return parsed.data;
}

/** Writes the file readable by its owner only (it holds an API key), atomically. */
export async function writeCredentials(path: string, creds: Credentials): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

const trimSlash = (url: string) => url.replace(/\/+$/, '');

export async function resolveConnection(
  flags: ConnectionFlags,
  env: Env = process.env,
): Promise<Connection> {
  const path = credentialsPath(defaultDataDir(env));
  const apiUrl = flags.apiUrl ?? env.TEMPER_API_URL;
  const apiKey = flags.apiKey ?? env.TEMPER_API_KEY;
  const account = flags.account ?? env.TEMPER_ACCOUNT;
  // The file is only read when something is missing: explicit settings work without it.
  const file = apiUrl && apiKey && account ? undefined : await readCredentials(path);
  const key = apiKey ?? file?.apiKey;
  if (!key)
    throw new Error(
      `no API key: start the stack with \`temper up\` (it writes ${path}), or pass --api-key / set TEMPER_API_KEY`,
    );
  // A key from the file belongs to the file's account; a key given alone is asked about.
  const keyAccount = apiKey === undefined || apiKey === file?.apiKey ? file?.account : undefined;
  const url = trimSlash(apiUrl ?? file?.apiUrl ?? 'http://127.0.0.1:8080');
  return {
    apiUrl: url,
    apiKey: key,
    account: account ?? keyAccount ?? (await accountOfKey(url, key)),
  };
}

/** The account a key belongs to (`GET /v1/accounts` lists exactly the caller's). */
async function accountOfKey(apiUrl: string, apiKey: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${apiUrl}/v1/accounts`, { headers: { authorization: `Bearer ${apiKey}` } });
  } catch (error) {
    throw new Error(`cannot reach the control plane at ${apiUrl}: ${(error as Error).message}`);
  }
  const body = (await res.json().catch(() => ({}))) as {
    accounts?: { name?: string }[];
    error?: { message?: string };
  };
  const name = body.accounts?.[0]?.name;
  if (!res.ok || !name)
    throw new Error(
      `cannot find the API key's account: ${body.error?.message ?? `HTTP ${res.status}`}`,
    );
  return name.split('/').pop()!;
}

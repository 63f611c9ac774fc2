/**
 * Who may call a deployment's gateway.
 *
 * The control plane is the only holder of the key store; a gateway never opens it. A gateway
 * accepts two credentials, both as `Authorization: Bearer <credential>` (or `X-Api-Key`):
 *
 * - the deployment's **access token**: a random secret the registry mints when it creates the
 *   deployment and keeps in memory (it is never stored or logged). In-process callers get it
 *   from the registry: the worker's rollouts, the SDK's own deployments. (The control plane's
 *   `/hot_load/v1` + `/inference/v1` routes hand requests to the gateway in process, after
 *   their own check of the caller's API key and account: Gateway.dispatch, no credential
 *   check here.) Replicas get it from their launcher in their environment and require it on
 *   their own endpoints, so a process on the host cannot bypass the gateway.
 * - a user's **API key**, when the registry's owner gave it a key verifier: the verifier is
 *   a function of the control plane (the gateway asks it, it answers the key's account or
 *   null); answers are cached for a short while so sampling does not pay a store read per
 *   request. The key's account must own the deployment: another account's key is answered
 *   404 like an unknown deployment (the REST API's rule: no account learns of another's
 *   resources).
 *
 * No credential, or a wrong one, is 401.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { GatewayError } from './errors.js';

/** The account a key belongs to, or null when it is no key (the control plane answers). */
export type KeyVerifier = (key: string) => Promise<string | null>;

/** A fresh per-deployment access token (never derived from anything the user knows). */
export function mintAccessToken(): string {
  return `tdt_${randomBytes(32).toString('base64url')}`;
}

/** The credential a request carries, if any. */
export function presentedCredential(req: IncomingMessage): string | undefined {
  const raw = req.headers['x-api-key'];
  const x = (Array.isArray(raw) ? raw[0] : raw)?.trim();
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
  return bearer ?? (x || undefined);
}

export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** How long a key's answer is trusted before the control plane is asked again. */
const KEY_CACHE_MS = 10_000;
const KEY_CACHE_MAX = 1024;

export class GatewayAuth {
  private readonly cache = new Map<string, { account: string | null; until: number }>();
  constructor(
    private readonly account: string,
    private readonly deploymentName: string,
    readonly accessToken: string,
    private readonly verifyKey?: KeyVerifier,
    /** An extra static key the deployment was created with (the registry's `apiKey`). */
    private readonly staticKey?: string,
  ) {}

  /** Throws 401 (no or wrong credential) or 404 (another account's key). */
  async check(req: IncomingMessage): Promise<void> {
    const given = presentedCredential(req);
    if (given === undefined)
      throw new GatewayError(
        401,
        'unauthenticated',
        `${this.deploymentName}: missing credential: send "Authorization: Bearer <api key>"`,
      );
    if (sameSecret(given, this.accessToken)) return;
    if (this.staticKey !== undefined && sameSecret(given, this.staticKey)) return;
    const account = this.verifyKey ? await this.accountOf(given) : null;
    if (account === null) throw new GatewayError(401, 'unauthenticated', 'invalid API key');
    if (account !== this.account)
      throw new GatewayError(404, 'not_found', `${this.deploymentName} not found`);
  }

  private async accountOf(key: string): Promise<string | null> {
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit.account;
    const account = await (this.verifyKey as KeyVerifier)(key);
    if (this.cache.size >= KEY_CACHE_MAX) this.cache.clear();
    this.cache.set(key, { account, until: now + KEY_CACHE_MS });
    return account;
  }
}

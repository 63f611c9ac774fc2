/**
 * Which trainer pod a gateway request goes to: the rlorTrainerJob named in the path, owned
 * by the caller's account (another account's job is "not found", as on the REST API), and
 * serving (JOB_STATE_RUNNING with the address and pod token its workflow published). One gRPC
 * channel per pod, reused across requests.
 */

import { createTrainerClient, type TrainerClient } from '../../../trainer/index.js';
import type { Deps } from '../../context.js';
import { ApiError, notFound } from '../../http/errors.js';
import { resourceName } from '../../http/ids.js';
import { getRow } from '../../resources/common.js';
import { isFinal } from '../../resources/jobs/states.js';

export interface TrainerTarget {
  account: string;
  job: string;
  /** accounts/{a}/rlorTrainerJobs/{job} */
  name: string;
  client: TrainerClient;
}

export class TrainerChannels {
  private readonly clients = new Map<string, TrainerClient>();

  constructor(private readonly deps: Deps) {}

  /** The serving trainer of `job`, or the error the client should see. */
  async resolve(principalAccount: string, account: string, job: string): Promise<TrainerTarget> {
    const name = resourceName(account, 'rlorTrainerJobs', job);
    if (account !== principalAccount) throw notFound(`${name} not found`);
    const row = await getRow(this.deps, 'rlorTrainerJobs', account, job);
    const state = String(row.body.state);
    const address = typeof row.body.trainerAddress === 'string' ? row.body.trainerAddress : '';
    const token = typeof row.body.trainerToken === 'string' ? row.body.trainerToken : '';
    if (state === 'JOB_STATE_RUNNING' && address)
      return { account, job, name, client: this.client(address, token) };
    if (isFinal(state))
      // Permanent until resumed: a 4xx, so the client fails now instead of retrying.
      throw new ApiError(
        'FAILED_PRECONDITION',
        `trainer job ${name} is ${state}: resume it (POST /v1/${name}:resume) and reconnect`,
      );
    throw new ApiError('UNAVAILABLE', `trainer job ${name} is ${state}: not serving yet`);
  }

  private client(address: string, token: string): TrainerClient {
    // Keyed by address and token: a resumed job's new pod may reuse the port, not the token.
    const key = `${address}|${token}`;
    let client = this.clients.get(key);
    if (!client) {
      client = createTrainerClient(address, token);
      this.clients.set(key, client);
    }
    return client;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

/**
 * The loop behind every stream that follows a job (`{job}/events`, `{job}/logs?follow=true`):
 * send what is new for the job's row, end with `end` once the job reaches a final state (or
 * `DELETED`), poll the store again after a pause, keep the connection alive, and stop when the
 * client goes away or the server closes (the client reconnects elsewhere).
 *
 * Streams poll the store rather than being told: the control plane keeps no job state in
 * memory and any replica can serve any stream.
 */
import type { Collection, ResourceRow } from '../../store/index.js';
import type { Deps } from '../context.js';
import type { RequestCtx } from '../http/router.js';
import { openSse, type SseStream } from '../http/sse.js';
import type { Body } from './common.js';
import { isFinal } from './jobs/states.js';

const POLL_MS = 500;
const HEARTBEAT_MS = 15_000;

export async function followJobRow(
  deps: Deps,
  collection: Collection,
  ctx: RequestCtx,
  first: ResourceRow<Body>,
  /** Sends what is new for `row` (called once per poll, first with `first`). */
  poll: (row: ResourceRow<Body>, sse: SseStream) => Promise<void>,
): Promise<void> {
  const sse = openSse(ctx);
  let lastBeat = Date.now();
  try {
    for (let row = first; !sse.done; ) {
      await poll(row, sse);
      if (isFinal(row.body.state)) {
        sse.send('end', { state: row.body.state });
        break;
      }
      if (Date.now() - lastBeat > HEARTBEAT_MS) {
        lastBeat = Date.now();
        sse.beat();
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (sse.done) break;
      const next = await deps.store.get<Body>(collection, first.account, first.id);
      if (!next) {
        sse.send('end', { state: 'DELETED' });
        break;
      }
      row = next;
    }
  } catch (err) {
    sse.send('error', { message: (err as Error).message });
  }
  sse.end();
}

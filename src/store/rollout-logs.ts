/**
 * How rollout log records (what a remote environment reports about a rollout: status, logs)
 * are kept in the artifact store. The control plane receives and writes them
 * (src/control-plane/resources/rollout-logs.ts); the worker reads them while a remote rollout
 * runs (src/workflows/activities/remote-rollouts.ts). Both import this, not each other.
 */
import { z } from 'zod';

/** Where the log records of `rolloutId` in `account` are kept (artifact store). */
export function rolloutLogPrefix(account: string, rolloutId: string): string {
  return `accounts/${account}/rolloutLogs/${rolloutId}/`;
}

/** A kept record's key: `status-…` when it carries a status, `log-…` otherwise. */
export const isStatusRecordKey = (key: string) => key.split('/').pop()!.startsWith('status-');

export const rolloutLogRecordSchema = z.object({
  program: z.string().max(200).nullish(),
  status: z
    .object({
      code: z.number().int(),
      message: z
        .string()
        .max(64 * 1024)
        .nullish(),
      details: z.array(z.unknown()).nullish(),
    })
    .nullish(),
  message: z
    .string()
    .max(256 * 1024)
    .nullish(),
  tags: z.array(z.string().max(300)).max(1000),
  extras: z.record(z.string(), z.unknown()).nullish(),
});
export type RolloutLogRecord = z.output<typeof rolloutLogRecordSchema>;

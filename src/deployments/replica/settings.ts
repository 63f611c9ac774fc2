/**
 * The replica settings a deployment may ask for, each with its one range: the replica process
 * validates its config with these, and the control plane's deployment schema takes them as
 * they are, so a value a replica cannot run (100,000 threads) is refused at create, naming
 * the field, instead of starting a process that thrashes the host.
 */
import { z } from 'zod';

/** More engine threads than this never helps one replica (and a host has fewer cores). */
export const MAX_REPLICA_THREADS = 64;

export const replicaSettings = {
  threads: z.number().int().min(1).max(MAX_REPLICA_THREADS),
  /** Requests one replica serves at once. */
  maxConcurrent: z.number().int().min(1).max(1024),
  /** Sequences decoded together in one step. */
  maxDecodeBatch: z.number().int().min(1).max(256),
};

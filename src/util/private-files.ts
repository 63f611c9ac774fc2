/**
 * Files a temper process creates are its owner's alone. The platform's data (the store and
 * its WAL, datasets, checkpoints, credentials, keys, logs) holds other people's models and
 * secrets, so every temper process — the CLI (`temper up`, `control-plane`, `worker`,
 * `trainer serve`) and deployment replicas — sets its umask to 077 first thing: files come out
 * 0600 and directories 0700 wherever they are created, by us or by a library (SQLite's -wal and
 * -shm files included), and child processes (pods, replicas, the Temporal dev server) inherit
 * it. One process-wide setting rather than a mode at each of the many places that write.
 */
export const PRIVATE_UMASK = 0o077;

export function restrictFileModes(): void {
  process.umask(PRIVATE_UMASK);
}

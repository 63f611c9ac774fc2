// The deployment's hot-load ledger: every snapshot signalled, full or delta, with each
// replica's readiness transitions and load error. Reset forgets every snapshot (the next
// signal must then be full).
import type { ReplicaStatus } from '../replica/runtime.js';

export interface LedgerReplicaRow {
  replica_id: string;
  readiness_transitions: { readiness: boolean; time: string }[];
  load_error: string | null;
  timing_ms: { fetch: number; build: number; swap: number } | null;
}

export interface LedgerRow {
  identity: string;
  snapshot_type: 'full' | 'delta';
  previous_snapshot_identity: string | null;
  signal_time: string;
  load_error: string | null;
  replicas: LedgerReplicaRow[];
}

export class Ledger {
  private rows: LedgerRow[] = [];
  /** Replica load records older than this (ISO) belong to a reset ledger and are ignored. */
  private resetAt = '';

  add(row: Omit<LedgerRow, 'replicas'>): LedgerRow {
    const r: LedgerRow = { ...row, replicas: [] };
    this.rows.push(r);
    return r;
  }

  has(identity: string): boolean {
    return this.rows.some((r) => r.identity === identity && r.load_error === null);
  }

  reset(): number {
    const n = this.rows.length;
    this.rows = [];
    this.resetAt = new Date().toISOString();
    return n;
  }

  /** Folds the replicas' load records into the rows. */
  update(statuses: ReplicaStatus[]): void {
    for (const row of this.rows) {
      for (const s of statuses) {
        const rec = [...s.loads]
          .reverse()
          .find((l) => l.identity === row.identity && l.signaledAt >= this.resetAt);
        if (!rec) continue;
        const transitions = [{ readiness: false, time: rec.signaledAt }];
        if (rec.readyAt) transitions.push({ readiness: true, time: rec.readyAt });
        const rr: LedgerReplicaRow = {
          replica_id: s.replica_id,
          readiness_transitions: transitions,
          load_error: rec.error,
          timing_ms: rec.timing
            ? { fetch: rec.timing.fetchMs, build: rec.timing.buildMs, swap: rec.timing.swapMs }
            : null,
        };
        const i = row.replicas.findIndex((x) => x.replica_id === s.replica_id);
        if (i >= 0) row.replicas[i] = rr;
        else row.replicas.push(rr);
        if (rec.error && row.load_error === null) row.load_error = rec.error;
      }
    }
  }

  /** Most recent first, as `firectl get ledger` shows it. */
  list(): LedgerRow[] {
    return [...this.rows].reverse();
  }
}

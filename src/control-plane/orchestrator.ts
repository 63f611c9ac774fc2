/**
 * What the REST layer needs from orchestration: the contract lives in src/orchestration/jobs.ts
 * (shared with the workflows that implement it, so neither imports the other).
 */
export type {
  JobCollection,
  JobOrchestrator,
  JobRef,
  PromoteRequest,
} from '../orchestration/jobs.js';

/**
 * Evaluators: running a user's RFT evaluator (JavaScript/TypeScript, or Python in the
 * eval-protocol style) in a sandbox with limits. The only way the platform runs one.
 *
 * ## How an evaluator version is stored (the contract with uploaders)
 * An `evaluators` row (accounts/{a}/evaluators/{id}) whose body holds:
 * - `language`: 'javascript' | 'typescript' | 'python' | 'dockerfile' (inferred from the entry
 *   file's extension when absent).
 * - Its files, either
 *   - single-file JS/TS (the REST `source` upload): `sourceKey` (artifact key),
 *     `sourceFilename` (plain name, e.g. evaluator.ts), `sourceSha256` (hex of the bytes); or
 *   - any number of files (Python / eval-protocol uploads): `files: [{ path, key, sha256,
 *     bytes? }]`, `path` relative to the project root (the folder holding requirements.txt;
 *     the archive's leading folder from `ep upload` stripped), `key` the artifact key under
 *     `accounts/{a}/evaluators/{id}/` (by convention `.../files/{path}`), `sha256` lowercase
 *     hex of the bytes as uploaded.
 *   Every file is fetched from the artifacts store and checked against its sha256 before a
 *   job runs it; a mismatch fails the job with a message naming the evaluator and the file.
 * - `entryPoint`: JS — the export name (default: `evaluate`, else the default export).
 *   Python — eval-protocol's pytest-style `path/to/file.py::function` (what `ep upload`
 *   sends); a bare `file.py` means its function `evaluate`, else its single
 *   `@evaluation_test` function. JS in `files` form uses `file.mjs::exportName` the same way.
 * - Python requirements: the file `requirements.txt` at the root of `files` (may be empty, or
 *   absent). The environment is a virtualenv of the operator's base packages (eval-protocol,
 *   settings.ts) plus these, named by their content hash and built once per worker machine
 *   (needs PyPI, or the index the operator configured, at that first build only).
 * - `allowNetwork` (default false): without it the evaluator has no network at all.
 * - `secrets` (default []): keyNames of the account's secrets (accounts/{a}/secrets) given to
 *   the evaluator as environment variables; nothing else of the worker's environment is.
 * - Dockerfile evaluators are refused at upload where no container engine runs (here: always).
 *
 * ## What an evaluator is called with and returns
 * Per rollout: `{ messages, completion, groundTruth, row }`. JS returns a number or
 * `{ score, reason?, valid? }` (possibly async). Python: a plain `evaluate(row)` gets the same
 * dict and returns the same shapes; an `@evaluation_test` function gets an eval-protocol
 * `EvaluationRow` (messages incl. the completion as the last assistant message,
 * `ground_truth`) and returns it with `evaluation_result.score / reason / is_score_valid`.
 * A throw, a score outside [0, 1], no score, or a limit hit makes that rollout invalid with
 * score 0 and the reason recorded; one bad rollout never fails the job.
 *
 * ## How it runs
 * checkEvaluator (before a job starts) and openEvaluator (once per job on the host running its
 * pod; the workflows keep it warm across segments) verify the files;
 * openEvaluator then starts one sandboxed process (sandbox.ts: bubblewrap + rlimits + its own
 * uid) running a runner (runners/) that speaks JSON lines; evaluator-process.ts queues
 * rollouts to it, holds each to its wall and CPU limits, and replaces it when it dies.
 */

export type { Evaluation, RolloutInput } from './evaluator-process.js';
export {
  checkEvaluator,
  type Evaluate,
  type Evaluator,
  type EvaluatorDeps,
  type EvaluatorStore,
  type OpenOptions,
  openEvaluator,
  sandboxNode,
} from './open.js';
export {
  type SandboxSettings,
  type SandboxSettingsInput,
  sandboxSettings,
  sandboxSettingsFromEnv,
  sandboxSettingsSchema,
} from './settings.js';
export {
  EVALUATOR_LANGUAGES,
  type EvaluatorLanguage,
  evaluatorAccessSchema,
  evaluatorFileSchema,
  evaluatorVersionSchema,
  type ResolvedVersion,
  resolveVersion,
  secretKeyName,
} from './version.js';
export { EvaluatorIntegrityError } from './workspace.js';

/**
 * How an evaluator version is stored: the fields of its `evaluators` row body that the
 * sandbox reads (the contract between uploaders and the runner; see index.ts), validated once
 * here, and normalised to one list of files to fetch and verify.
 */
import { z } from 'zod';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex sha256');

/** A relative path inside the evaluator's directory: no `..`, no absolute paths, no oddities. */
export const evaluatorFilePath = z
  .string()
  .min(1)
  .max(300)
  .regex(
    /^(?!\/)(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._@+-]+(\/[A-Za-z0-9._@+-]+)*$/,
    'must be a relative path of plain names (no "..", no leading "/")',
  );

export const evaluatorFileSchema = z.strictObject({
  /** Where the file sits in the evaluator's directory (relative to requirements.txt's folder). */
  path: evaluatorFilePath,
  /** Artifact key of its bytes (under accounts/{a}/evaluators/{id}/). */
  key: z.string().min(1),
  sha256,
  bytes: z.number().int().nonnegative().optional(),
});

export const EVALUATOR_LANGUAGES = ['javascript', 'typescript', 'python', 'dockerfile'] as const;
export type EvaluatorLanguage = (typeof EVALUATOR_LANGUAGES)[number];

/** The env-var names an evaluator may ask for (the same rule as a secret's keyName). */
export const secretKeyName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name');

/**
 * The sandbox-relevant settings of an evaluator, one schema: the REST create route and the
 * job's loader both parse with it.
 */
export const evaluatorAccessSchema = z.object({
  /** Whether the evaluator may open network connections (default: none at all). */
  allowNetwork: z.boolean().default(false),
  /**
   * keyNames of the account's secrets injected as environment variables. Left out: every
   * secret of the account, as the documentation promises ("all secrets created here will be
   * injected as environment variables for your Evaluator") and as `ep upload` relies on, since
   * it stores a project's `.env` as secrets without naming them on the evaluator. A list
   * narrows it to those keys (`[]`: none).
   */
  secrets: z.array(secretKeyName).max(64).optional(),
});

export const evaluatorVersionSchema = evaluatorAccessSchema.extend({
  language: z.enum(EVALUATOR_LANGUAGES).optional(),
  /** Single-file JS/TS evaluators (the REST `source` upload). */
  sourceKey: z.string().min(1).optional(),
  sourceFilename: evaluatorFilePath.optional(),
  sourceSha256: sha256.optional(),
  /** Multi-file evaluators (Python / eval-protocol uploads). */
  files: z.array(evaluatorFileSchema).max(2000).optional(),
  /** JS: the export name. Python: `file.py::function` or `file.py` (see index.ts). */
  entryPoint: z.string().min(1).max(500).optional(),
});

export type EvaluatorVersion = z.output<typeof evaluatorVersionSchema>;

export interface ResolvedVersion {
  language: EvaluatorLanguage;
  files: z.output<typeof evaluatorFileSchema>[];
  /** The file the runner loads. */
  entryFile: string;
  /** JS: export name (default: `evaluate`, else the default export). Python: function name. */
  entryFunction: string | null;
  allowNetwork: boolean;
  /** The secrets' keyNames it gets; null: every secret of its account. */
  secrets: string[] | null;
}

function languageOf(file: string): EvaluatorLanguage | null {
  if (/\.m?ts$/.test(file)) return 'typescript';
  if (/\.m?js$/.test(file)) return 'javascript';
  if (/\.py$/.test(file)) return 'python';
  if (/(^|\/)Dockerfile$/.test(file)) return 'dockerfile';
  return null;
}

/** The row body as files, entry file and function; an Error naming what is wrong otherwise. */
export function resolveVersion(name: string, body: unknown): ResolvedVersion {
  const parsed = evaluatorVersionSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(
      `evaluator ${name} is stored in a shape the runner does not know: ${issue.path.join('.')}: ${issue.message}`,
    );
  }
  const v = parsed.data;
  let files = v.files ?? [];
  if (v.sourceKey) {
    if (!v.sourceSha256)
      throw new Error(`evaluator ${name} has no recorded sha256 for its source: upload it again`);
    files = [
      ...files,
      { path: v.sourceFilename ?? 'evaluator.mjs', key: v.sourceKey, sha256: v.sourceSha256 },
    ];
  }
  if (files.length === 0) throw new Error(`evaluator ${name} has no source files`);
  const paths = new Set<string>();
  for (const f of files) {
    if (paths.has(f.path)) throw new Error(`evaluator ${name} lists ${f.path} twice`);
    paths.add(f.path);
  }
  const [filePart, fnPart] = (v.entryPoint ?? '').split('::');
  const language =
    v.language ??
    languageOf(v.sourceKey ? (v.sourceFilename ?? 'evaluator.mjs') : filePart || files[0]!.path);
  if (!language) throw new Error(`evaluator ${name}: cannot tell its language; set "language"`);
  let entryFile: string;
  let entryFunction: string | null;
  if (language === 'python') {
    // eval-protocol's pytest-style `path.py::function`; a bare `path.py` means `evaluate`
    // (or the file's single @evaluation_test function).
    // Without an entry point: the only .py file, else main.py.
    const python = files.filter((f) => f.path.endsWith('.py'));
    entryFile = filePart || (python.length === 1 ? python[0]!.path : 'main.py');
    entryFunction = fnPart || null;
  } else if (language === 'dockerfile') {
    entryFile = filePart || 'Dockerfile';
    entryFunction = null;
  } else {
    // JS keeps the REST shape: entryPoint is the export name; the source file is the entry.
    entryFile = v.sourceKey ? (v.sourceFilename ?? 'evaluator.mjs') : filePart || files[0]!.path;
    const exportName = v.sourceKey ? v.entryPoint : fnPart;
    entryFunction = exportName && exportName !== 'default' ? exportName : null;
  }
  if (!paths.has(entryFile))
    throw new Error(`evaluator ${name}: its entry file ${entryFile} is not among its files`);
  return {
    language,
    files,
    entryFile,
    entryFunction,
    allowNetwork: v.allowNetwork,
    secrets: v.secrets ?? null,
  };
}

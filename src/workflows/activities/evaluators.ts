/**
 * Evaluators: a user's JavaScript (or, under tsx, TypeScript) module that scores one rollout
 * in [0, 1]. Its default export (or a named `evaluate`) is called with
 * `{ messages, completion, groundTruth, row }` and returns a number or
 * `{ score, reason?, valid? }`, possibly async. The source comes from the evaluator resource
 * (uploaded text in artifacts); it is written to a content-addressed file and imported once
 * per process. A throw, a timeout or a score outside [0, 1] makes the rollout invalid with
 * score 0 and the reason recorded — one bad rollout never fails the job.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import type { ObjectStore } from '../../checkpoints/object-store/index.js';
import type { Store } from '../../control-plane/store/types.js';

export interface RolloutInput {
  messages: unknown[];
  completion: string;
  groundTruth: unknown;
  row: Record<string, unknown>;
}

export interface Evaluation {
  score: number;
  valid: boolean;
  reason: string;
}

export type Evaluate = (rollout: RolloutInput) => Promise<Evaluation>;

const evaluatorBodySchema = z
  .object({
    /** Artifact key of the uploaded source. */
    sourceKey: z.string().optional(),
    /** Inline source. */
    source: z.string().optional(),
    /** File name the source was uploaded as (its extension picks JS or TS). */
    sourceFilename: z.string().optional(),
  })
  .passthrough();

const resultSchema = z.union([
  z.number(),
  z.object({ score: z.number(), reason: z.string().optional(), valid: z.boolean().optional() }),
]);

const modules = new Map<string, Promise<(r: RolloutInput) => unknown>>();

async function importSource(source: string, ext: string): Promise<(r: RolloutInput) => unknown> {
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  let loading = modules.get(hash);
  if (!loading) {
    loading = (async () => {
      const dir = join(tmpdir(), 'temper-evaluators');
      await mkdir(dir, { recursive: true });
      const file = join(dir, `${hash}${ext}`);
      await writeFile(file, source);
      const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
      const fn = mod.evaluate ?? mod.default;
      if (typeof fn !== 'function')
        throw new Error('the evaluator module must export a function (default or `evaluate`)');
      return fn as (r: RolloutInput) => unknown;
    })();
    loading.catch(() => modules.delete(hash));
    modules.set(hash, loading);
  }
  return loading;
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`evaluator timed out after ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** The evaluator `name` (accounts/{a}/evaluators/{id}) as a scoring function. */
export async function loadEvaluator(
  name: string,
  deps: { store: Store; artifacts: ObjectStore },
  timeoutMs: number,
): Promise<Evaluate> {
  const m = /^accounts\/([a-z][a-z0-9-]*)\/evaluators\/([a-z][a-z0-9-]*)$/.exec(name);
  if (!m) throw new Error(`'${name}' is not an evaluator name accounts/{account}/evaluators/{id}`);
  const row = await deps.store.get('evaluators', m[1]!, m[2]!);
  if (!row) throw new Error(`Evaluator '${m[2]}' not found in account`);
  const body = evaluatorBodySchema.parse(row.body);
  const source =
    body.source ??
    (body.sourceKey ? (await deps.artifacts.get(body.sourceKey)).toString('utf8') : undefined);
  if (source === undefined) throw new Error(`evaluator ${name} has no source`);
  const ext = /\.m?ts$/.test(body.sourceFilename ?? '') ? '.ts' : '.mjs';
  const fn = await importSource(source, ext);
  return async (rollout) => {
    try {
      const parsed = resultSchema.safeParse(
        await withTimeout(Promise.resolve(fn(rollout)), timeoutMs),
      );
      if (!parsed.success) return { score: 0, valid: false, reason: 'evaluator returned no score' };
      const r = typeof parsed.data === 'number' ? { score: parsed.data } : parsed.data;
      if (!(r.score >= 0 && r.score <= 1))
        return { score: 0, valid: false, reason: `score ${r.score} is outside [0, 1]` };
      return { score: r.score, valid: r.valid ?? true, reason: ('reason' in r && r.reason) || '' };
    } catch (error) {
      return { score: 0, valid: false, reason: (error as Error).message };
    }
  };
}

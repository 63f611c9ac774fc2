// What `temper model score --model` names: a directory as it is, or a model id fetched into the
// local cache (model-fetch.ts) with a progress bar on stderr.
import { stat } from 'node:fs/promises';
import { type ApiFlags, apiContext } from './commands/common.js';
import { fetchModel, modelNameOf } from './model-fetch.js';
import type { ScoreSource } from './model-score.js';
import { createProgress, type Progress } from './progress.js';

export async function modelSource(ref: string, flags: ApiFlags): Promise<ScoreSource> {
  // A path that exists is a directory to read (a directory named like an id wins over the id).
  const local = await stat(ref).catch(() => undefined);
  if (local) {
    if (!local.isDirectory()) throw new Error(`--model: ${ref} is a file, not a model directory`);
    return { name: ref, dir: ref };
  }
  // Checked before connecting: a mistyped path should not be reported as a connection problem.
  if (!modelNameOf(ref, 'a'))
    throw new Error(
      `--model: ${ref} is no directory, nor a model id (an id, or accounts/{account}/models/{id})`,
    );
  const { api } = await apiContext(flags);
  const name = modelNameOf(ref, api.account)!;
  let progress: Progress | undefined;
  const fetched = await fetchModel(api, name, {
    onProgress: (done, total, file) => {
      progress ??= createProgress('download', total, process.stderr);
      progress.update(done, { file });
    },
    onWait: (model) =>
      process.stderr.write(`waiting for another temper process downloading ${model}\n`),
  });
  progress?.stop();
  return fetched.adapterDir
    ? { name, dir: fetched.dir, adapterDir: fetched.adapterDir }
    : { name, dir: fetched.dir };
}

/**
 * The tracker every recipe always has: `metrics.jsonl` in its log directory, one JSON object
 * per step (`{"step": 3, "loss:mean": 0.41, ...}`), appended, so a resumed run continues the
 * same file; parameters go to `params.json` and artifacts under `artifacts/`.
 */
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { type ParamValue, type RunStatus, type Tracker, TrackingError } from './types.js';

export class LocalTracker implements Tracker {
  constructor(readonly dir: string) {}

  get runRefs(): string[] {
    return [`file:${join(this.dir, 'metrics.jsonl')}`];
  }

  async logParams(params: Readonly<Record<string, ParamValue>>): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await writeFile(join(this.dir, 'params.json'), `${JSON.stringify(params, null, 2)}\n`);
  }

  async logMetrics(step: number, metrics: Readonly<Record<string, number>>): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await appendFile(join(this.dir, 'metrics.jsonl'), `${JSON.stringify({ step, ...metrics })}\n`);
  }

  async logArtifact(path: string, content: string | Uint8Array): Promise<void> {
    const rel = normalize(path);
    if (rel.startsWith('..') || rel.startsWith('/'))
      throw new TrackingError(`artifact path '${path}' leaves the run's artifact folder`);
    const file = join(this.dir, 'artifacts', rel);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, content);
  }

  async finish(_status: RunStatus): Promise<void> {}
}

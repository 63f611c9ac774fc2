// The README's main command (`temper quickstart`) in-process: stack up, dataset upload, SFT
// job through the REST API, deployments of the base and the fine-tuned model, stack down.
import { describe, expect, it } from 'vitest';
import { QUICKSTART_DEFAULTS, runQuickstart } from '../../src/cli/quickstart.js';

describe('temper quickstart', () => {
  it('fine-tunes the bundled model on the platform: answers take the new style', async () => {
    const lines: string[] = [];
    const { job, before, after } = await runQuickstart(
      { ...QUICKSTART_DEFAULTS, threads: 1 },
      (line) => lines.push(line),
    );
    expect(job).toMatchObject({
      state: 'JOB_STATE_COMPLETED',
      outputModel: 'accounts/default/models/sure-answers-model',
    });
    expect(before.every((a) => !a.startsWith('Sure!'))).toBe(true);
    expect(after.every((a) => a.startsWith('Sure!'))).toBe(true);
    // The base model's knowledge survives the style change.
    expect(after[0]).toContain('Lima');
    expect(lines.join('\n')).toContain('accounts/default/datasets/sure-answers (128 examples');
  }, 120_000);
});

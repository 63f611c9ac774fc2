// The README's main job, end to end on the real bundled model and dataset.
import { describe, expect, it } from 'vitest';
import { DEMO_DEFAULTS, runDemo } from '../../src/cli/demo.js';

describe('temper demo', () => {
  it('fine-tunes the bundled model: the loss falls and answers take the new style', async () => {
    const lines: string[] = [];
    const { losses, before, after } = await runDemo(DEMO_DEFAULTS, (l) => lines.push(l));
    expect(losses).toHaveLength(DEMO_DEFAULTS.steps);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! / 20);
    expect(before.every((a) => !a.startsWith('Sure!'))).toBe(true);
    expect(after.every((a) => a.startsWith('Sure!'))).toBe(true);
    // The base model's knowledge survives the style change.
    expect(after[0]).toContain('Lima');
    expect(lines.join('\n')).toContain('accounts/temper/models/byte-lm-3m');
  }, 120_000);
});

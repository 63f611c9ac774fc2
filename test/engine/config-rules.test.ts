// temper's config.json rules against transformers itself: scripts/reference/config_rules.py
// shows with transformers' own models that each refusal is necessary (the field changes the
// logits, or transformers cannot run the config) and each acceptance exact (the same logits as
// the plain config). The parser must give exactly those verdicts; the fixture is regenerated
// live and must match.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { checkHfConfig, configDifference, parseHfConfig } from '../../src/engine/config.js';
import { PARITY_DIR } from './parity-fixtures.js';

interface Rule {
  name: string;
  config: Record<string, unknown>;
  verdict: 'refused' | 'accepted' | 'accepted_as';
  field?: string;
  expect?: Record<string, unknown>;
  max_logit_diff?: number;
}

const FILE = join(PARITY_DIR, 'config_rules.json');
const fixture = JSON.parse(readFileSync(FILE, 'utf8')) as {
  base: Record<string, Record<string, unknown>>;
  rules: Rule[];
};

describe('config rules agree with transformers', () => {
  it.each(fixture.rules.map((r) => [r.name, r] as const))('%s', (_name, rule) => {
    const family = rule.config.model_type as string;
    const base = parseHfConfig(fixture.base[family]);
    const { config, problems } = checkHfConfig(rule.config);
    if (rule.verdict === 'refused') {
      expect(config).toBeNull();
      expect(problems.map((p) => p.field)).toContain(rule.field);
    } else if (rule.verdict === 'accepted') {
      expect(problems).toEqual([]);
      expect(configDifference(config!, base)).toBeNull();
    } else {
      expect(problems).toEqual([]);
      expect(config).toMatchObject(rule.expect!);
    }
  });
});

const run = promisify(execFile);
const PYTHON = join(
  process.env.TEMPER_PYREF_VENV ?? join(homedir(), '.cache', 'temper', 'pyref'),
  'bin',
  'python',
);

describe('config rules fixture', () => {
  const out = mkdtempSync(join(tmpdir(), 'config-rules-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('regenerates to the committed verdicts', async () => {
    expect(existsSync(PYTHON), `${PYTHON} missing: run scripts/setup.sh`).toBe(true);
    const file = join(out, 'config_rules.json');
    await run(
      PYTHON,
      [join(import.meta.dirname, '..', '..', 'scripts', 'reference', 'config_rules.py')],
      {
        env: { ...process.env, TEMPER_CONFIG_RULES_OUT: file },
        maxBuffer: 16 << 20,
      },
    );
    const fresh = JSON.parse(readFileSync(file, 'utf8'));
    const strip = (rules: Rule[]) => rules.map(({ max_logit_diff: _, ...r }) => r);
    expect(strip(fresh.rules)).toEqual(strip(fixture.rules));
    fresh.rules.forEach((r: Rule, i: number) => {
      const committed = fixture.rules[i]!.max_logit_diff;
      if (committed !== undefined)
        expect(Math.abs(r.max_logit_diff! - committed)).toBeLessThan(1e-6);
    });
  }, 120_000);
});

// The evaluator sandbox's settings (one schema, read from TEMPER_EVALUATOR_*) and the stored
// shape of an evaluator version: bad values are refused with a message naming the field.
import { describe, expect, it } from 'vitest';
import { resolveVersion, sandboxSettingsFromEnv } from '../../src/evaluators/index.js';

const file = (path: string) => ({
  path,
  key: `accounts/a/evaluators/e/files/${path}`,
  sha256: 'a'.repeat(64),
});

describe('sandbox settings', () => {
  it('defaults, environment overrides and range messages', () => {
    const defaults = sandboxSettingsFromEnv({});
    expect(defaults).toMatchObject({
      memoryMb: 2048,
      cpuSeconds: 30,
      maxProcesses: 64,
      basePackages: ['eval-protocol==0.3.33'],
    });
    expect(
      sandboxSettingsFromEnv({
        TEMPER_EVALUATOR_MEMORY_MB: '512',
        TEMPER_EVALUATOR_PIP_ARGS: '--no-index --find-links /wheels',
      }),
    ).toMatchObject({ memoryMb: 512, pipArgs: ['--no-index', '--find-links', '/wheels'] });
    expect(() => sandboxSettingsFromEnv({ TEMPER_EVALUATOR_MEMORY_MB: '100' })).toThrow(
      'invalid evaluator sandbox settings: memoryMb: must be at least 256 MiB',
    );
    expect(() => sandboxSettingsFromEnv({ TEMPER_EVALUATOR_MAX_PROCESSES: 'many' })).toThrow(
      /invalid evaluator sandbox settings: maxProcesses: /,
    );
  });
});

describe('stored evaluator versions', () => {
  const name = 'accounts/a/evaluators/e';

  it('single-file JS, eval-protocol entry points and the default Python entry', () => {
    expect(
      resolveVersion(name, {
        sourceKey: `${name}/score.js`,
        sourceFilename: 'score.js',
        sourceSha256: 'b'.repeat(64),
        entryPoint: 'default',
      }),
    ).toMatchObject({ language: 'javascript', entryFile: 'score.js', entryFunction: null });
    expect(
      resolveVersion(name, {
        files: [file('test_math.py'), file('requirements.txt')],
        entryPoint: 'test_math.py::test_math_answer',
      }),
    ).toMatchObject({
      language: 'python',
      entryFile: 'test_math.py',
      entryFunction: 'test_math_answer',
    });
    expect(
      resolveVersion(name, { files: [file('pkg/judge.py'), file('requirements.txt')] }),
    ).toMatchObject({
      language: 'python',
      entryFile: 'pkg/judge.py',
      entryFunction: null,
      allowNetwork: false,
      // Not named: every secret of the account.
      secrets: null,
    });
  });

  it('refuses shapes it cannot run, naming the problem', () => {
    expect(() => resolveVersion(name, { files: [file('../etc/passwd')] })).toThrow(
      /evaluator accounts\/a\/evaluators\/e is stored in a shape the runner does not know: files\.0\.path: must be a relative path/,
    );
    expect(() =>
      resolveVersion(name, { sourceKey: `${name}/x.js`, sourceFilename: 'x.js' }),
    ).toThrow(
      'evaluator accounts/a/evaluators/e has no recorded sha256 for its source: upload it again',
    );
    expect(() => resolveVersion(name, { files: [file('a.py')], entryPoint: 'b.py::f' })).toThrow(
      'evaluator accounts/a/evaluators/e: its entry file b.py is not among its files',
    );
    expect(() => resolveVersion(name, { files: [file('a.py')], secrets: ['NOT-A-NAME'] })).toThrow(
      /secrets\.0: must be an environment variable name/,
    );
    expect(() => resolveVersion(name, {})).toThrow(
      'evaluator accounts/a/evaluators/e has no source files',
    );
  });
});

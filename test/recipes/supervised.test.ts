// The supervised cookbook recipes end to end on the bundled model, trainers as real local pods:
// SFT through `temper recipe sft --config file.yaml`, killed with SIGKILL after its first
// checkpoint and rerun on the same log path, resumes and ends bitwise where an uninterrupted
// run ends, and promotes its output; DPO and ORPO learn (loss falls) and promote. Config files
// with a bad field name its line.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecipeError, runRecipe } from '../../src/recipes/kit/index.js';
import { cliEnv, temper } from '../cli/support.js';
import { writePreferencePairs } from './toy-data.js';

let dir: string;
const quiet = pino({ level: 'silent' });
const ROOT = join(import.meta.dirname, '..', '..');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-recipes-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const SFT = { max_steps: 6, batch_size: 4, threads: 1, learning_rate: 1e-3, dcp_save_interval: 2 };

const stepLosses = async (logPath: string) =>
  (await readFile(join(logPath, 'metrics.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; 'loss:mean': number });

describe('sft recipe', () => {
  it('resumes after kill -9 bitwise, learns, and promotes its output', async () => {
    // the uninterrupted run, as a library call
    const whole = (await runRecipe(
      'sft',
      { ...SFT, log_path: join(dir, 'sft-whole') },
      { log: quiet },
    )) as { losses: number[] };
    expect(whole.losses.at(-1)).toBeLessThan((whole.losses[0] as number) * 0.8);

    // the same config as a YAML file through the CLI, killed once its step-2 checkpoint exists
    const logPath = join(dir, 'sft-killed');
    const file = join(dir, 'sft.yaml');
    await writeFile(
      file,
      `# SFT on the bundled demo dataset\n${Object.entries(SFT)
        .map(([k, v]) => `${k}: ${v}`)
        .join('\n')}\nlog_path: ${logPath}\noutput_model_id: sft-resumed\n`,
    );
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'recipe', 'sft', '--config', file],
      { cwd: ROOT, env: cliEnv({ TEMPER_LOG_LEVEL: 'warn' }), stdio: 'ignore' },
    );
    const exited = new Promise((r) => child.once('exit', r));
    const deadline = Date.now() + 120_000;
    while (!existsSync(join(logPath, 'dataloader.json')) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGKILL');
    await exited;
    const saved = JSON.parse(await readFile(join(logPath, 'dataloader.json'), 'utf8'));
    const at = saved.checkpoints.at(-1).step as number;
    expect(at).toBeGreaterThanOrEqual(2);
    expect(at).toBeLessThan(SFT.max_steps);

    const rerun = await temper(
      ['recipe', 'sft', '--config', file],
      { TEMPER_LOG_LEVEL: 'warn' },
      180_000,
    );
    expect(rerun.stderr).toBe('');
    expect(rerun.code).toBe(0);
    const result = JSON.parse(rerun.stdout.trim().split('\n').at(-1) as string);
    expect(result.resumedFrom).toMatch(new RegExp(`:step-0*${at}$`));
    expect(result.steps).toBe(SFT.max_steps);
    // the steps after the checkpoint are the uninterrupted run's, bit for bit
    expect(result.losses).toEqual(whole.losses.slice(at));
    const logged = await stepLosses(logPath);
    expect(logged.at(-1)).toEqual({ ...logged.at(-1), step: SFT.max_steps });
    expect(result.model).toMatchObject({
      name: 'accounts/default/models/sft-resumed',
      state: 'READY',
    });
    expect(result.model.files.map((f: { path: string }) => f.path)).toContain('model.safetensors');
  }, 300_000);

  it('a config file with a bad field names its line; an unknown recipe is refused', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, `log_path: ${join(dir, 'bad')}\nmax_steps: 3\nbatch_size: -2\n`);
    const r = await temper(['recipe', 'sft', '--config', file], {});
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${file}:3: sft config batch_size:`);
    expect(existsSync(join(dir, 'bad'))).toBe(false);
    await expect(runRecipe('nope', {})).rejects.toBeInstanceOf(RecipeError);
    await expect(runRecipe('sft', { max_steps: 1 })).rejects.toThrow(/log_path/);
  }, 60_000);
});

describe('preference recipes', () => {
  it('DPO: loss falls from ln 2; the output is promoted', async () => {
    const dataset = await writePreferencePairs(join(dir, 'pairs.jsonl'));
    const r = (await runRecipe(
      'dpo',
      {
        log_path: join(dir, 'dpo'),
        dataset,
        lora_rank: 8,
        max_steps: 8,
        batch_size: 5,
        learning_rate: 5e-3,
        threads: 1,
        output_model_id: 'dpo-out',
      },
      { log: quiet },
    )) as { losses: number[]; model: { name: string; state: string } };
    expect(r.losses[0]).toBeCloseTo(Math.log(2), 4);
    expect(r.losses.at(-1)).toBeLessThan(0.6);
    expect(r.model).toMatchObject({ name: 'accounts/default/models/dpo-out', state: 'READY' });
  }, 180_000);

  it('ORPO: loss falls', async () => {
    const dataset = await writePreferencePairs(join(dir, 'pairs-orpo.jsonl'));
    const r = (await runRecipe(
      'orpo',
      {
        log_path: join(dir, 'orpo'),
        dataset,
        max_steps: 6,
        batch_size: 5,
        learning_rate: 1e-3,
        threads: 1,
      },
      { log: quiet },
    )) as { losses: number[] };
    const first = (r.losses[0] as number) + (r.losses[1] as number);
    const last = (r.losses.at(-1) as number) + (r.losses.at(-2) as number);
    expect(last).toBeLessThan(first * 0.7);
  }, 180_000);
});

// bench:recipes — the RL recipes on the bundled model (byte-lm-3m, full-parameter, local trainer
// pod + one-replica sampling deployment), two numbers:
//   - rl_over_parts: the synchronous RL recipe's steady-state step (weight sync = sampler save +
//     hot-load, rollouts, update) over the sum of its three parts each timed alone in the same
//     run (a fresh pod and deployment of the same shape; goal ≤ 1.10: the loop adds little
//     around its parts).
//   - async_over_sync: the async RL recipe's steady-state step time with max_staleness 1 over
//     the synchronous recipe's, same config (goal ≤ 0.7: sampling overlaps training).
// Before it, where each step's time went: the synchronous step's save, hot-load, rollouts and
// update, and the async step's wait for its rollouts, its update (behind the trainer's save)
// and the background sync's save and hot-load (the recipes log these per step).
// Steady state: the first WARMUP steps are left out; medians. Last stdout line:
//   {"bench":"recipes","rl_over_parts":..,"rl_over_parts_in_loop":..,"async_over_sync":..}
// (rl_over_parts_in_loop: the loop's step over its parts as timed inside the loop, the same
// minutes of a shared machine; rl_over_parts compares two phases run minutes apart.)
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { asyncRlConfigSchema, run as runAsyncRl } from '../src/recipes/async-rl/index.js';
import { batchIndices } from '../src/recipes/kit/data.js';
import { openRecipeClients } from '../src/recipes/kit/index.js';
import { rlConfigSchema, run as runRl } from '../src/recipes/rl/index.js';
import {
  policyLossOf,
  readPrompts,
  rolloutDatums,
  sampleRollouts,
  syncWeights,
  trainStep,
} from '../src/recipes/rl/steps.js';
import { writeCapitalPrompts } from '../test/recipes/toy-data.js';
import { median } from './support/common.js';

const STEPS = Number(process.env.BENCH_RECIPES_STEPS ?? 10);
const WARMUP = 2;
const log = (line: string) => process.stdout.write(`${line}\n`);
const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
const quiet = pino({ level: 'silent' });

const dir = await mkdtemp(join(tmpdir(), 'temper-bench-recipes-'));
const dataset = await writeCapitalPrompts(join(dir, 'prompts.jsonl'));
const common = {
  dataset,
  threads: 1,
  learning_rate: 5e-4,
  max_steps: STEPS,
  prompt_groups_per_step: 4,
  completions_per_prompt: 4,
  max_completion_tokens: 24,
  // Rewards must differ within a group for the step to train (uniform groups are dropped):
  // at temperature 1 the bundled model's answers to these prompts all score alike.
  temperature: 2,
};

async function stepTimes(logPath: string, key = 'step_time_s:last'): Promise<number[]> {
  const lines = (await readFile(join(logPath, 'metrics.jsonl'), 'utf8')).trim().split('\n');
  return lines.map((l) => JSON.parse(l)[key] as number).slice(WARMUP);
}

try {
  // 1. the synchronous recipe, then each of its parts alone on the same pod and deployment
  const syncConfig = rlConfigSchema.parse({ ...common, log_path: join(dir, 'sync') });
  const clients = await openRecipeClients(syncConfig, {
    recipe: 'rl',
    service: { createDeployment: true },
    log: quiet,
  });
  try {
    await runRl(syncConfig, clients);
  } finally {
    await clients.close();
  }
  const syncSteps = await stepTimes(syncConfig.log_path);
  const inLoop = {
    save: median(await stepTimes(syncConfig.log_path, 'save_time_s:last')),
    hotLoad: median(await stepTimes(syncConfig.log_path, 'hot_load_time_s:last')),
    sync: median(await stepTimes(syncConfig.log_path, 'sync_time_s:last')),
    sample: median(await stepTimes(syncConfig.log_path, 'rollout_time_s:last')),
    train: median(await stepTimes(syncConfig.log_path, 'train_time_s:last')),
  };

  // each part alone, on a fresh pod and deployment of the same shape
  let parts: { sync: number; sample: number; train: number };
  const partsConfig = rlConfigSchema.parse({ ...common, log_path: join(dir, 'parts') });
  const pc = await openRecipeClients(partsConfig, {
    recipe: 'rl',
    service: { createDeployment: true },
    log: quiet,
  });
  try {
    const policy = await pc.service.createTrainingClient();
    const { prompts } = await readPrompts(partsConfig);
    const loss = policyLossOf(partsConfig);
    // the loop's prompts of each step (its rollouts' lengths follow the prompts)
    const groups = partsConfig.prompt_groups_per_step;
    const batchAt = (s: number) =>
      batchIndices(prompts.length, s * groups, groups, partsConfig.seed).map(
        (i) => prompts[i] as (typeof prompts)[number],
      );
    const t = { sync: [] as number[], sample: [] as number[], train: [] as number[] };
    let sampler = await syncWeights(policy, pc.service, 0);
    let rollouts = await sampleRollouts(sampler, batchAt(0), partsConfig, 0, 0);
    for (let s = 1; s <= STEPS; s++) {
      let t0 = performance.now();
      sampler = await syncWeights(policy, pc.service, s);
      t.sync.push((performance.now() - t0) / 1000);
      t0 = performance.now();
      rollouts = await sampleRollouts(sampler, batchAt(s), partsConfig, s, s);
      t.sample.push((performance.now() - t0) / 1000);
      const datums = rolloutDatums(rollouts);
      t0 = performance.now();
      await trainStep(policy, datums, loss, partsConfig.adam, 5e-4);
      t.train.push((performance.now() - t0) / 1000);
    }
    parts = {
      sync: median(t.sync.slice(WARMUP)),
      sample: median(t.sample.slice(WARMUP)),
      train: median(t.train.slice(WARMUP)),
    };
  } finally {
    await pc.close();
  }

  // 2. the asynchronous recipe, max_staleness 1
  const asyncConfig = asyncRlConfigSchema.parse({
    ...common,
    log_path: join(dir, 'async'),
    max_staleness: 1,
  });
  const ac = await openRecipeClients(asyncConfig, {
    recipe: 'async-rl',
    service: { createDeployment: true },
    log: quiet,
  });
  try {
    await runAsyncRl(asyncConfig, ac);
  } finally {
    await ac.close();
  }
  const asyncSteps = await stepTimes(asyncConfig.log_path);
  const asyncMedian = async (key: string) =>
    round(median(await stepTimes(asyncConfig.log_path, `${key}_time_s:last`)));
  const asyncParts = {
    rolloutWait: await asyncMedian('rollout_wait'),
    update: await asyncMedian('update'),
    syncWait: await asyncMedian('sync_wait'),
    save: await asyncMedian('save'),
    hotLoad: await asyncMedian('hot_load'),
  };

  const rlStep = median(syncSteps);
  const sumParts = parts.sync + parts.sample + parts.train;
  const asyncStep = median(asyncSteps);
  log(
    `sync RL step ${round(rlStep)} s (median of ${syncSteps.length}); parts alone: sync ${round(parts.sync)} s + rollouts ${round(parts.sample)} s + update ${round(parts.train)} s = ${round(sumParts)} s`,
  );
  log(
    `parts in the loop: sync ${round(inLoop.sync)} s (save ${round(inLoop.save)} + hot-load ${round(inLoop.hotLoad)}) + rollouts ${round(inLoop.sample)} s + update ${round(inLoop.train)} s`,
  );
  log(`async RL step (max_staleness 1) ${round(asyncStep)} s (median of ${asyncSteps.length})`);
  log(
    `async step's parts (medians; they overlap): waiting for its rollouts ${asyncParts.rolloutWait} s, update ${asyncParts.update} s (behind the trainer's save), of it waiting for the hot-load ${asyncParts.syncWait} s; background sync: save ${asyncParts.save} s + hot-load ${asyncParts.hotLoad} s`,
  );
  log(
    `load average ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
  );
  log(
    JSON.stringify({
      bench: 'recipes',
      rl_over_parts: round(rlStep / sumParts),
      // the same step over its own parts timed inside the loop: no drift of the shared
      // machine's load between the loop's phase and the parts' phase
      rl_over_parts_in_loop: round(rlStep / (inLoop.sync + inLoop.sample + inLoop.train)),
      async_over_sync: round(asyncStep / rlStep),
    }),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}

/**
 * The asynchronous RL loop. Rollouts for step s may come from any policy version ≥ s −
 * max_staleness: before training step s the rollouts of steps s … s + max_staleness are
 * already in flight on the deployment (each sampled from whatever version it serves when it
 * starts), so sampling overlaps training. After each update the new weights are saved as a
 * delta and hot-loaded in the background, and the rollouts of step s + max_staleness + 1
 * start once they are served. The loss uses
 * the rollouts' own sampling logprobs as the behaviour policy (the clipped ratio corrects for
 * the lag).
 */
import type { DeploymentSampler } from '../../sdk/index.js';
import { peakLearningRate } from '../kit/base-config.js';
import { startPolicy } from '../kit/checkpoints.js';
import type { RecipeClients } from '../kit/clients.js';
import { batchIndices } from '../kit/data.js';
import type { RlResult } from '../rl/loop.js';
import {
  meanReward,
  type Prompt,
  policyLossOf,
  type Rollouts,
  readPrompts,
  referenceOf,
  rolloutDatums,
  type SyncTimes,
  sampleRollouts,
  syncWeights,
  trainStep,
} from '../rl/steps.js';
import { learningRateAt } from '../schedule.js';
import type { AsyncRlConfig } from './config.js';
import { RolloutSchedule } from './rollout-schedule.js';

export async function run(config: AsyncRlConfig, clients: RecipeClients): Promise<RlResult> {
  const { service, tracker, log } = clients;

  // 1. prompts and the policy, restored from the log path
  const { prompts } = await readPrompts(config);
  const { policy, ckpt, resumed } = await startPolicy('async-rl', config, clients);
  let step = resumed?.step ?? 0;
  const consumedAt = (s: number) =>
    (resumed?.dataConsumed ?? 0) + (s - (resumed?.step ?? 0)) * config.prompt_groups_per_step;
  const loss = policyLossOf(config);
  const reference = await referenceOf(config, service);
  const schedule = {
    ...config.lr_schedule,
    peak: peakLearningRate(config),
    totalSteps: config.max_steps,
  };

  // 2. the deployment serves version `step`; rollouts of the next steps start on it
  let version = step;
  let sampler: DeploymentSampler = await syncWeights(policy, service, version);
  const inFlight = new Map<number, Promise<Rollouts>>();
  const due = new RolloutSchedule(step, config.max_steps, config.max_staleness);
  /** Starts the rollouts of every step that may start on the served version (each once). */
  const launchDue = () => {
    for (const s of due.due(version)) {
      const batch = batchIndices(
        prompts.length,
        consumedAt(s),
        config.prompt_groups_per_step,
        config.seed,
      ).map((i) => prompts[i] as Prompt);
      const p = sampleRollouts(sampler, batch, config, s, version);
      p.catch(() => undefined); // awaited in its step; a failure surfaces there
      inFlight.set(s, p);
    }
  };
  // The weight sync of a new version runs in the background: the trainer runs it before the
  // next update (its operations keep their order), while the deployment hot-loads it the
  // rollouts it may serve start; only those rollouts wait for it, not the next update.
  let syncing: Promise<void> | undefined;
  /** The halves of the last sync that completed (the step's metrics report them). */
  let synced: SyncTimes = { saveS: 0, hotLoadS: 0 };
  const startSync = (v: number) => {
    const times = { saveS: 0, hotLoadS: 0 };
    syncing = syncWeights(policy, service, v, times).then((next) => {
      sampler = next;
      version = v;
      synced = times;
      // the rollouts this version allows start now, not when the loop next looks (it may be
      // waiting for the current step's rollouts)
      launchDue();
    });
    syncing.catch(() => undefined); // awaited below; a failure surfaces there
  };

  // 3. train on step s's rollouts while steps s+1 … s+max_staleness are sampled
  const rewards: number[] = [];
  try {
    while (step < config.max_steps) {
      const t0 = performance.now();
      launchDue();
      if (!due.started(step)) await syncing; // staleness 0: this step's rollouts need it
      launchDue();
      const rollouts = await (inFlight.get(step) as Promise<Rollouts>);
      inFlight.delete(step);
      const t1 = performance.now();
      const lr = learningRateAt(schedule, step);
      const update = trainStep(policy, rolloutDatums(rollouts), loss, config.adam, lr, reference);
      update.catch(() => undefined); // awaited below
      // the version this step trained on is served: the newest rollouts may start
      await syncing;
      const t2 = performance.now();
      launchDue();
      const out = await update;
      const t3 = performance.now();
      step += 1;
      if (step < config.max_steps) startSync(step);
      const reward = meanReward(rollouts);
      rewards.push(reward);
      await tracker.logMetrics(step, {
        'reward:mean': reward,
        ...(out ? { 'loss:mean': out.loss, ...out.metrics } : {}),
        'staleness:last': step - 1 - rollouts.version,
        'learning_rate:last': lr,
        'step_time_s:last': (performance.now() - t0) / 1000,
        // Where the step's time went (the parts overlap): waiting for its rollouts, the
        // update (behind the trainer's save of the version before it), and the last
        // background sync's save and hot-load, of which only the hot-load left after the
        // update was issued was waited for.
        'rollout_wait_time_s:last': (t1 - t0) / 1000,
        'update_time_s:last': (t3 - t1) / 1000,
        'sync_wait_time_s:last': (t2 - t1) / 1000,
        'save_time_s:last': synced.saveS,
        'hot_load_time_s:last': synced.hotLoadS,
      });
      log.info({ step, reward, staleness: step - 1 - rollouts.version }, 'async rl step');
      await ckpt.saveOnInterval(config.dcp_save_interval, step, config.max_steps, consumedAt(step));
    }
    await syncing;
  } finally {
    // the sync first: when it lands it may start more rollouts, which are then awaited too
    await Promise.allSettled([syncing]);
    await Promise.allSettled([...inFlight.values()]);
  }

  // 4. final checkpoint, promotion
  return { steps: step, rewards, ...(await ckpt.finish(step, consumedAt(step), config, resumed)) };
}

// ZeRO-1 through real pods: replicas with sharded optimizer state (each keeps its shard of the
// AdamW moments) train as unsharded replicas do, save one checkpoint collectively (each
// replica writes its own file), and the
// checkpoint saved at 4 ranks loads at 2 sharded ranks and at 1 pod, resharding the moments:
// the next step gives the same weights everywhere (within data-parallel tolerance).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointsPrefix, parseCheckpointName } from '../../src/checkpoints/catalog/index.js';
import { DcpCheckpoints } from '../../src/checkpoints/dcp/index.js';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import { ServiceClient, type TrainingClient, type TrainingDatum } from '../../src/sdk/index.js';
import type { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import { randomTokens, rng, tempDir, testLauncher, writeTinyModelDir } from '../trainer/helpers.js';

function datum(tokens: number[]): TrainingDatum {
  return {
    modelInput: { chunks: [{ type: 'encoded_text', tokens: tokens.slice(0, -1) }] },
    lossFnInputs: { target_tokens: tokens.slice(1), weights: tokens.slice(1).map(() => 1) },
  };
}

const batch = (step: number) => {
  const r = rng(40 + step);
  return [0, 1, 2, 3, 4, 5].map((i) => datum(randomTokens(r, 6 + i)));
};
const ADAM = { learningRate: 3e-3, gradClipNorm: 1, weightDecay: 0.01 };

describe('ZeRO-1 trainer replicas', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let launcher: LocalProcessLauncher;
  let modelDir: string;

  beforeAll(async () => {
    tmp = await tempDir('zero1');
    launcher = testLauncher(`${tmp.dir}/jobs`);
    modelDir = await writeTinyModelDir(`${tmp.dir}/tiny`, { seed: 21 });
  });

  afterAll(async () => {
    for (const job of await launcher.list()) await launcher.stop(job.jobId, { graceMs: 2_000 });
    await tmp?.cleanup();
  });

  async function withClient<T>(
    replicas: number,
    shard: boolean,
    fn: (t: TrainingClient) => Promise<T>,
  ): Promise<T> {
    const service = ServiceClient.fromConfig(
      {
        baseModel: modelDir,
        loraRank: 0,
        threads: 1,
        trainerReplicaCount: replicas,
        shardOptimizerState: shard,
        cleanupTrainerOnClose: true,
      },
      { launcher },
    );
    try {
      return await fn(await service.createTrainingClient());
    } finally {
      await service.close();
    }
  }

  const probe = async (t: TrainingClient, replicas: number) => {
    const tokens = randomTokens(rng(77), 12);
    const out = await t.forward(Array.from({ length: replicas }, () => datum(tokens)));
    return out.lossFnOutputs.map((o) => Array.from(o.logprobs.data));
  };

  const step = async (t: TrainingClient, s: number) => {
    await t.forwardBackward(batch(s), 'cross_entropy');
    return (await t.optimStep(ADAM, 'num_loss_tokens')).gradNorm;
  };

  it('saved at 4 sharded ranks, loads at 2 sharded ranks and at 1 pod; the next step agrees', async () => {
    let saved = '';
    const [four, plainFour] = await Promise.all([
      withClient(4, true, async (t) => {
        const norms = [await step(t, 1), await step(t, 2)];
        saved = (await t.saveState('zero4')).path;
        norms.push(await step(t, 3));
        return { norms, probe: await probe(t, 4) };
      }),
      // The same run unsharded: the same numbers.
      withClient(4, false, async (t) => {
        const norms = [await step(t, 1), await step(t, 2), await step(t, 3)];
        return { norms, probe: await probe(t, 4) };
      }),
    ]);
    for (let i = 0; i < 3; i++) {
      expect(Math.abs(four.norms[i]! - plainFour.norms[i]!)).toBeLessThan(
        1e-6 * plainFour.norms[i]!,
      );
    }
    for (let j = 0; j < four.probe[0]!.length; j++) {
      expect(Math.abs(four.probe[0]![j]! - plainFour.probe[0]![j]!)).toBeLessThan(1e-6);
    }
    // Every sharded replica holds the same weights, bitwise.
    for (const p of four.probe) expect(p).toEqual(four.probe[0]);
    // Each replica wrote its own file of the checkpoint.
    const name = parseCheckpointName(saved);
    const dcp = new DcpCheckpoints(await openObjectStore(launcher.checkpointUrl), {
      prefix: checkpointsPrefix(name.account, name.job),
    });
    const meta = await dcp.metadata(name.checkpoint);
    expect(meta.files.map((f) => f.rank)).toEqual([0, 1, 2, 3]);

    const resumed = async (replicas: number, shard: boolean) =>
      withClient(replicas, shard, async (t) => {
        const loaded = await t.loadStateWithOptimizer(saved);
        expect(loaded.step).toBe(2);
        const norm = await step(t, 3);
        return { norm, probe: await probe(t, replicas) };
      });
    const [two, one] = await Promise.all([resumed(2, true), resumed(1, false)]);
    for (const r of [two, one]) {
      expect(Math.abs(r.norm - four.norms[2]!)).toBeLessThan(1e-5 * four.norms[2]!);
      for (let j = 0; j < four.probe[0]!.length; j++) {
        expect(Math.abs(r.probe[0]![j]! - four.probe[0]![j]!)).toBeLessThan(1e-5);
      }
    }
    expect(two.probe[1]).toEqual(two.probe[0]);
  }, 120_000);
});

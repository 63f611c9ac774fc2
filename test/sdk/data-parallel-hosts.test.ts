// Data-parallel replicas on different hosts (network namespaces, test/support/netns.ts): a
// 4-rank run with ranks 0 and 2 on one host and 1 and 3 on the other trains with the gloo
// collectives going between the hosts; when the second host's pods die, reconnectAndWait
// replaces them there, every rank restores the last checkpoint and the run finishes with the
// replicas identical and the weights those of the saved state plus the same steps.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceClient, type TrainingDatum } from '../../src/sdk/index.js';
import {
  defaultTemperCommand,
  type Launcher,
  LocalProcessLauncher,
  type TrainerEndpoint,
  type TrainerJobInfo,
  type TrainerLaunchSpec,
} from '../../src/trainer/launcher/index.js';
import { createTestHost, routeBetweenHosts, type TestHost } from '../support/netns.js';
import { randomTokens, rng, tempDir, writeTinyModelDir } from '../trainer/helpers.js';

/** Places rank r (job id `{id}` or `{id}-r{r}`) on host r mod the number of hosts. */
class PlacedLauncher implements Launcher {
  readonly kind = 'local';
  constructor(
    private readonly hosts: LocalProcessLauncher[],
    readonly checkpointUrl: string,
  ) {}

  private byJob(jobId: string | undefined): LocalProcessLauncher {
    const r = Number(/-r(\d+)$/.exec(jobId ?? '')?.[1] ?? 0);
    return this.hosts[r % this.hosts.length]!;
  }

  launch(spec: TrainerLaunchSpec): Promise<TrainerEndpoint> {
    return this.byJob(spec.jobId).launch(spec);
  }
  attach(jobId: string): Promise<TrainerEndpoint> {
    return this.byJob(jobId).attach(jobId);
  }
  stop(jobId: string, options?: { graceMs?: number }): Promise<void> {
    return this.byJob(jobId).stop(jobId, options);
  }
  get(jobId: string): Promise<TrainerJobInfo | undefined> {
    return this.byJob(jobId).get(jobId);
  }
  async list(): Promise<TrainerJobInfo[]> {
    return (await Promise.all(this.hosts.map((h) => h.list()))).flat();
  }
}

function datum(tokens: number[]): TrainingDatum {
  return {
    modelInput: { chunks: [{ type: 'encoded_text', tokens: tokens.slice(0, -1) }] },
    lossFnInputs: { target_tokens: tokens.slice(1), weights: tokens.slice(1).map(() => 1) },
  };
}
const batch = (step: number) => {
  const r = rng(60 + step);
  return [0, 1, 2, 3, 4, 5, 6].map((i) => datum(randomTokens(r, 5 + i)));
};

describe('data-parallel replicas on two hosts', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let hosts: TestHost[] = [];
  let launcher: PlacedLauncher;
  let modelDir: string;

  beforeAll(async () => {
    tmp = await tempDir('dp-hosts');
    modelDir = await writeTinyModelDir(`${tmp.dir}/tiny`, { seed: 31 });
    hosts = [createTestHost(0), createTestHost(1)];
    routeBetweenHosts(hosts);
    const checkpointUrl = `file://${tmp.dir}/checkpoints`;
    launcher = new PlacedLauncher(
      hosts.map(
        (h, i) =>
          new LocalProcessLauncher({
            stateDir: `${tmp.dir}/jobs-${i}`,
            command: [...h.exec, ...defaultTemperCommand()],
            host: h.ip,
            checkpointUrl,
            env: { ...process.env, TEMPER_LOG_LEVEL: 'warn' },
          }),
      ),
      checkpointUrl,
    );
  }, 30_000);

  afterAll(async () => {
    for (const job of (await launcher?.list()) ?? []) {
      await launcher.stop(job.jobId, { graceMs: 2_000 }).catch(() => undefined);
    }
    for (const h of hosts) h.destroy();
    await tmp?.cleanup();
  });

  it('trains across the hosts and recovers when one host dies', async () => {
    const service = ServiceClient.fromConfig(
      { baseModel: modelDir, loraRank: 0, threads: 1, trainerReplicaCount: 4 },
      { launcher },
    );
    try {
      const training = await service.createTrainingClient();
      const ids = training.replicaJobIds;
      const infos = await Promise.all(ids.map((id) => launcher.get(id)));
      // Ranks 0, 2 on the first host, 1, 3 on the second.
      expect(infos.map((i) => i!.address.split(':')[0])).toEqual([
        hosts[0]!.ip,
        hosts[1]!.ip,
        hosts[0]!.ip,
        hosts[1]!.ip,
      ]);
      const probeData = [0, 1, 2, 3].map(() => datum(randomTokens(rng(5), 10)));
      const probe = async (t: typeof training) =>
        (await t.forward(probeData)).lossFnOutputs.map((o) => Array.from(o.logprobs.data));
      for (const s of [1, 2]) {
        await training.forwardBackward(batch(s), 'cross_entropy');
        await training.optimStep({ learningRate: 5e-3 }, 'num_loss_tokens');
      }
      const saved = await training.saveState('hosts-2');
      await training.forwardBackward(batch(3), 'cross_entropy');
      const third = await training.optimStep({ learningRate: 5e-3 }, 'num_loss_tokens');
      const expected = await probe(training);

      // The second host dies: both of its pods are killed.
      for (const id of [ids[1]!, ids[3]!]) process.kill((await launcher.get(id))!.pid!, 'SIGKILL');
      const resumed = await service.reconnectAndWait(undefined, {
        timeoutS: 90,
        maxWaitForResumableS: 10,
      });
      expect(resumed.replicaJobIds).toEqual(ids);
      const restored = await resumed.loadStateWithOptimizer(saved.path);
      expect(restored.step).toBe(2);
      await resumed.forwardBackward(batch(3), 'cross_entropy');
      const again = await resumed.optimStep({ learningRate: 5e-3 }, 'num_loss_tokens');
      expect(again.gradNorm).toBe(third.gradNorm);
      const after = await probe(resumed);
      // The replaced ranks and the surviving ones hold the same weights, bitwise, and the
      // recovered run equals the uninterrupted one.
      for (const p of after) expect(p).toEqual(after[0]);
      expect(after).toEqual(expected);
    } finally {
      await service.close({ cleanupTrainerOnClose: true });
    }
  }, 180_000);
});

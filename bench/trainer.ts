// bench:trainer — what the Training API costs on top of the engine, on a ~25M-parameter model
// (random weights written as an HF directory to a temp folder):
//   - custom_over_builtin: forwardBackwardCustom (SFT loss run in this process, two round
//     trips) over forwardBackward('cross_entropy') on the same batch, both through gRPC to a
//     pod (goal ≤ 1.2; the reference platform documents up to ~3x for custom losses);
//   - rpc_over_inprocess: a training step (forwardBackward cross_entropy + optimStep) through
//     the SDK and gRPC over the same step on the pod's own ModelRuntime in this process, same
//     thread count (goal ≤ 1.05);
//   - dp2_over_dp1: the step with 2 data-parallel pods (1 engine thread each, gradients
//     all-reduced between the pods on the transport the trainer picks: shared memory, as the
//     pods share this host) over 1 pod with 2 threads, on the same global batch (goal ≤ 1.15);
//     dp2_over_dp1_tcp the same with the collectives forced onto TCP
//     (sharedMemoryCollectives: false); dp2_zero_over_dp1 with ZeRO-1 (each pod updates only
//     its half of the weights: AdamW is not done twice); dp2_transports: what each run's
//     replicas' groups really took, from their pods' logs;
//   - allreduce_over_tcp: throughput of the all-reduce over TCP (forced) of a buffer the size
//     of the model's gradients (bytes / time) between two processes over a raw TCP stream of
//     the same bytes between the same two processes, both native (goal ≥ 0.8);
//     allreduce_shm_gbps / allreduce_shm_over_tcp_stream: the same all-reduce over the
//     shared-memory transport (another pair of processes), against the same stream;
//   - optimizer_mem_4_over_1: the AdamW state one rank holds after a step with ZeRO-1 at 4
//     ranks over an unsharded rank's (engine buffers still held + its shard; goal ≤ 0.3).
// Measurements are interleaved (A B C ... A B C ...) and medians reported, so a burst of
// contention hits every side. The machine's cores may be shared: the load average and the
// spread of the samples are printed, and the run is marked noisy when they say so.
// `--collectives` runs only the last two (a short run); `--quick` takes 3 reps instead of 7.
// Last stdout line: {"bench":"trainer","custom_over_builtin":..,"rpc_over_inprocess":..,"dp2_over_dp1":..,
//   "dp2_over_dp1_tcp":..,"allreduce_over_tcp":..,"allreduce_shm_over_tcp_stream":..,"allreduce_shm_gbps":..,
//   "optimizer_mem_4_over_1":..}
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { writeHfModelDir } from '../src/checkpoints/hf-model-dir.js';
import type { ModelConfig } from '../src/engine/config.js';
import { initialWeights } from '../src/engine/init.js';
import { TransformerModel } from '../src/engine/model.js';
import {
  ForwardBackwardRequestSchema,
  GradAccumulationNormalization,
  OptimStepRequestSchema,
} from '../src/gen/temper/trainer/v1/trainer_pb.js';
import { sftLoss } from '../src/losses/index.js';
import { ServiceClient, type TrainingClient, type TrainingDatum } from '../src/sdk/index.js';
import { toWireDatum } from '../src/sdk/types.js';
import { CollectiveStore } from '../src/trainer/collectives.js';
import { EngineHost } from '../src/trainer/engine-host.js';
import { LocalProcessLauncher } from '../src/trainer/launcher/index.js';
import { ModelRuntime } from '../src/trainer/model-runtime.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { IpcPeer } from '../test/support/ipc-peer.js';
import { LLAMA_25M } from './support/common.js';

const log = (line: string) => process.stdout.write(`${line}\n`);
const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
const args = new Set(process.argv.slice(2));
const REPS = args.has('--quick') ? 3 : 7;
const BATCH = 4;
const SEQ = 128;
const THREADS = Math.min(2, availableParallelism());

const CONFIG: ModelConfig = LLAMA_25M;

function makeBatch(): TrainingDatum[] {
  const u = seededRandom(77);
  return Array.from({ length: BATCH }, () => {
    const tokens = Array.from({ length: SEQ + 1 }, () => Math.floor(u() * CONFIG.vocabSize));
    return {
      modelInput: { chunks: [{ type: 'encoded_text' as const, tokens: tokens.slice(0, -1) }] },
      lossFnInputs: {
        target_tokens: tokens.slice(1),
        weights: tokens.slice(1).map((_, j) => (j >= 16 ? 1 : 0)),
      },
    };
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/** A bench/support/collective-peer.ts process: one command at a time over IPC. */
const startPeer = () => IpcPeer.start(new URL('./support/collective-peer.ts', import.meta.url));
const closePeer = (peer: IpcPeer) => peer.call({ op: 'exit' }).catch(() => undefined);

interface OptimizerMemory {
  params: number;
  engineBytes: number;
  shardBytes: number;
  bytes: number;
}

/**
 * The collectives between two processes (all-reduce vs raw TCP, interleaved) and the
 * optimizer memory of one rank at 4 ZeRO-1 ranks vs 1 unsharded rank.
 */
async function measureCollectives(floats: number, reps: number) {
  const store = new CollectiveStore('127.0.0.1', 0);
  const peers = await Promise.all([0, 1, 2, 3].map(() => startPeer()));
  try {
    const join = (world: number, prefix: string, sharedMemory: boolean, who = peers) =>
      Promise.all(
        who.slice(0, world).map((p, rank) =>
          p.call<string>({
            op: 'join',
            rank,
            world,
            storePort: store.port,
            prefix,
            sharedMemory,
          }),
        ),
      );
    // Two pairs of processes: one group with TCP forced (the allreduce_over_tcp: the
    // collective over TCP against a raw TCP stream between the same two processes), one with
    // the transport the trainer picks for same-host ranks (shared memory).
    const [a, b, c, d] = peers as [IpcPeer, IpcPeer, IpcPeer, IpcPeer];
    const transports = [
      ...(await join(2, 'bench/2tcp', false, [a, b])),
      ...(await join(2, 'bench/2shm', true, [c, d])),
    ];
    if (transports.join() !== 'tcp,tcp,shm,shm') {
      throw new Error(`unexpected collective transports: ${transports.join()}`);
    }
    const bytes = floats * 4;
    const timed = async (pair: IpcPeer[]) =>
      Math.max(
        ...(await Promise.all(pair.map((p) => p.call<number>({ op: 'allreduce', floats })))),
      );
    const allreduce = () => timed([a, b]);
    const allreduceShm = () => timed([c, d]);
    const tcp = async () => {
      const { fd, port } = await b.call<{ fd: number; port: number }>({ op: 'listen' });
      const [, sent] = await Promise.all([
        b.call<number>({ op: 'drain', fd, bytes }),
        a.call<number>({ op: 'send', port, bytes }),
      ]);
      return sent;
    };
    await allreduce();
    await tcp();
    await allreduceShm();
    const ar: number[] = [];
    const raw: number[] = [];
    const shm: number[] = [];
    for (let i = 0; i < reps; i++) {
      ar.push(await allreduce());
      raw.push(await tcp());
      shm.push(await allreduceShm());
    }
    log(
      `all-reduce of ${(bytes / 2 ** 20).toFixed(0)} MiB between 2 processes over TCP: median ${median(ar).toFixed(3)} s (${(bytes / median(ar) / 1e9).toFixed(2)} GB/s); raw TCP stream of the same bytes: ${median(raw).toFixed(3)} s (${(bytes / median(raw) / 1e9).toFixed(2)} GB/s); over shared memory: ${median(shm).toFixed(3)} s (${(bytes / median(shm) / 1e9).toFixed(2)} GB/s)`,
    );

    // Optimizer memory: one unsharded rank, then 4 ZeRO-1 ranks (each holds its shard only).
    const one = await a.call<OptimizerMemory>({ op: 'optimizer', sharded: false });
    await join(4, 'bench/4', true);
    const four = await Promise.all(
      peers.map((p) => p.call<OptimizerMemory>({ op: 'optimizer', sharded: true })),
    );
    const worst = Math.max(...four.map((f) => f.bytes));
    log(
      `AdamW state per rank: 1 rank ${(one.bytes / 2 ** 20).toFixed(1)} MiB; 4 ZeRO-1 ranks ${four.map((f) => (f.bytes / 2 ** 20).toFixed(1)).join(' / ')} MiB (engine-held ${four[0]!.engineBytes} bytes)`,
    );
    return {
      allreduceOverTcp: median(raw) / median(ar),
      minRatio: Math.min(...raw) / Math.min(...ar),
      allreduceGbps: bytes / median(ar) / 1e9,
      tcpGbps: bytes / median(raw) / 1e9,
      shmGbps: bytes / median(shm) / 1e9,
      shmOverTcpStream: median(raw) / median(shm),
      shmMinRatio: Math.min(...raw) / Math.min(...shm),
      optimizerMem4Over1: worst / one.bytes,
      optimizerBytes: { one: one.bytes, four: worst },
    };
  } finally {
    await Promise.all(peers.map(closePeer));
    store.close();
  }
}

/** The transport of every group each replica joined ("collective group joined" in its pod.log). */
async function groupTransports(dir: string, jobIds: readonly string[]): Promise<string[]> {
  const found = new Set<string>();
  for (const id of jobIds) {
    const text = await readFile(join(dir, 'jobs', id, 'pod.log'), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.includes('collective group joined')) continue;
      const t = (JSON.parse(line) as { transport?: string }).transport;
      if (t) found.add(t);
    }
  }
  return [...found];
}

/**
 * `--collectives`: only the all-reduce vs raw TCP part (and the optimizer memory), on a buffer
 * the size of the 25M model's parameters; a short run for work on the collectives.
 */
async function collectivesOnly(): Promise<void> {
  const loadStart = loadavg()[0]!;
  log(
    `bench:trainer --collectives — ${availableParallelism()} cores, load average ${loadStart.toFixed(2)}`,
  );
  const model = new TransformerModel(CONFIG, { threads: 1 });
  const params = [...initialWeights(model, 1234).values()].reduce((n, t) => n + t.data.length, 0);
  const coll = await measureCollectives(params, REPS);
  const maxLoad = Math.max(loadStart, loadavg()[0]!);
  log(
    JSON.stringify({
      bench: 'trainer',
      only: 'collectives',
      allreduce_over_tcp: round(coll.allreduceOverTcp),
      optimizer_mem_4_over_1: round(coll.optimizerMem4Over1),
      allreduce_gbps: round(coll.allreduceGbps),
      tcp_gbps: round(coll.tcpGbps),
      allreduce_shm_over_tcp_stream: round(coll.shmOverTcpStream),
      allreduce_shm_gbps: round(coll.shmGbps),
      min_ratios: {
        allreduce_over_tcp: round(coll.minRatio),
        allreduce_shm_over_tcp_stream: round(coll.shmMinRatio),
      },
      params,
      noisy: maxLoad > availableParallelism() + 0.5,
      max_load: round(maxLoad, 2),
    }),
  );
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'temper-bench-trainer-'));
  const launcher = new LocalProcessLauncher({
    stateDir: join(dir, 'jobs'),
    env: { ...process.env, TEMPER_LOG_LEVEL: 'warn' },
  });
  const services: ServiceClient[] = [];
  try {
    const loadStart = loadavg()[0]!;
    log(`bench:trainer — ${availableParallelism()} cores, load average ${loadStart.toFixed(2)}`);
    const init = new TransformerModel(CONFIG, { threads: 1 });
    const base = initialWeights(init, 1234, { normJitter: 0.1 });
    const params = [...base.values()].reduce((n, t) => n + t.data.length, 0);
    const modelDir = join(dir, 'model-25m');
    await writeHfModelDir(modelDir, { config: CONFIG, tensors: base });
    log(
      `model: ${params.toLocaleString('en-US')} parameters (H${CONFIG.hiddenSize} L${CONFIG.numLayers} I${CONFIG.intermediateSize} V${CONFIG.vocabSize}); batch ${BATCH}x${SEQ}; ${THREADS} engine threads; ${REPS} interleaved reps`,
    );

    const batch = makeBatch();
    const adam = { learningRate: 1e-5 };

    // In process: the pod's own ModelRuntime on an engine in this process (no gRPC, no SDK).
    const runtime = new ModelRuntime({
      id: 'model-inprocess',
      sessionId: 'session-inprocess',
      baseModel: modelDir,
      host: EngineHost.trainable(CONFIG, base, { threads: THREADS }),
      adapter: true,
      forwardOnly: false,
      limits: { vocabSize: CONFIG.vocabSize, maxContextLength: CONFIG.maxPositions },
    });
    const fbReq = create(ForwardBackwardRequestSchema, {
      modelId: runtime.id,
      seqId: 1,
      data: batch.map((d) => toWireDatum(d)),
      lossFn: 'cross_entropy',
    });
    const stepReq = create(OptimStepRequestSchema, {
      modelId: runtime.id,
      seqId: 2,
      adamParams: adam,
      gradAccumulationNormalization: GradAccumulationNormalization.NUM_LOSS_TOKENS,
    });

    const open = async (
      replicas: number,
      threads: number,
      shardOptimizerState = false,
      sharedMemoryCollectives = true,
    ): Promise<TrainingClient> => {
      const s = ServiceClient.fromConfig(
        {
          baseModel: modelDir,
          loraRank: 0,
          threads,
          trainerReplicaCount: replicas,
          shardOptimizerState,
          sharedMemoryCollectives,
          cleanupTrainerOnClose: true,
          // Lifecycle lines only, among them the transport each replica's group took.
          podLogLevel: 'info',
        },
        { launcher },
      );
      services.push(s);
      return s.createTrainingClient();
    };
    const [dp1, dp2, dp2Tcp, dp2Zero] = await Promise.all([
      open(1, THREADS),
      open(2, 1),
      open(2, 1, false, false),
      open(2, 1, true),
    ]);

    const sides = {
      inprocess: async () => {
        await runtime.forwardBackward(fbReq);
        await runtime.optimStep(stepReq);
      },
      // Awaiting each call before the next (the headline: the most round trips).
      rpcStep: async () => {
        await dp1.forwardBackward(batch, 'cross_entropy');
        await dp1.optimStep(adam, 'num_loss_tokens');
      },
      // Both calls issued before awaiting: the ordered queue runs them back to back.
      rpcPipelined: () =>
        Promise.all([
          dp1.forwardBackward(batch, 'cross_entropy'),
          dp1.optimStep(adam, 'num_loss_tokens'),
        ]),
      dp2Step: async () => {
        await dp2.forwardBackward(batch, 'cross_entropy');
        await dp2.optimStep(adam, 'num_loss_tokens');
      },
      dp2TcpStep: async () => {
        await dp2Tcp.forwardBackward(batch, 'cross_entropy');
        await dp2Tcp.optimStep(adam, 'num_loss_tokens');
      },
      dp2ZeroStep: async () => {
        await dp2Zero.forwardBackward(batch, 'cross_entropy');
        await dp2Zero.optimStep(adam, 'num_loss_tokens');
      },
    };
    const fbOnly = {
      builtin: () => dp1.forwardBackward(batch, 'cross_entropy'),
      custom: () => dp1.forwardBackwardCustom(batch, sftLoss()),
    };
    const samples: Record<string, number[]> = {
      inprocess: [],
      rpcStep: [],
      rpcPipelined: [],
      dp2Step: [],
      dp2TcpStep: [],
      dp2ZeroStep: [],
      builtin: [],
      custom: [],
    };
    // Warm-up: one of each.
    for (const fn of Object.values(sides)) await fn();
    await fbOnly.builtin();
    await fbOnly.custom();
    await dp1.optimStep(adam);
    const loads: number[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      for (const [name, fn] of Object.entries(sides)) samples[name]!.push(await time(fn));
      for (const [name, fn] of Object.entries(fbOnly)) {
        samples[name]!.push(await time(fn));
        await dp1.optimStep(adam); // clears the gradients (untimed)
      }
      loads.push(loadavg()[0]!);
    }
    const med = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
    const low = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, Math.min(...v)]));
    const spread = Object.fromEntries(
      Object.entries(samples).map(([k, v]) => [k, Math.max(...v) / Math.min(...v)]),
    );
    for (const [k, v] of Object.entries(samples)) {
      log(
        `${k.padEnd(13)} median ${med[k]!.toFixed(3)} s  (min ${Math.min(...v).toFixed(3)}, max ${Math.max(...v).toFixed(3)}, spread ${spread[k]!.toFixed(2)}x)`,
      );
    }
    const maxLoad = Math.max(loadStart, ...loads);
    const noisy =
      maxLoad > availableParallelism() + 0.5 || Object.values(spread).some((s) => s > 1.3);
    log(
      `load average during the run: ${loads.map((l) => l.toFixed(2)).join(' ')}${noisy ? ' — NOISY: other processes shared the cores (high load or sample spread > 1.3x); ratios are indicative only' : ''}`,
    );
    // What the replicas' collectives really travelled on, from their pods' logs.
    const transports = {
      dp2: await groupTransports(dir, dp2.replicaJobIds),
      dp2_tcp: await groupTransports(dir, dp2Tcp.replicaJobIds),
      dp2_zero: await groupTransports(dir, dp2Zero.replicaJobIds),
    };
    log(`collective transports of the replicas: ${JSON.stringify(transports)}`);
    // The collectives last, with the pods closed: they would otherwise share the cores.
    for (const svc of services.splice(0)) await svc.close().catch(() => undefined);
    const coll = await measureCollectives(params, REPS);
    const result = {
      bench: 'trainer',
      custom_over_builtin: round(med.custom! / med.builtin!),
      rpc_over_inprocess: round(med.rpcStep! / med.inprocess!),
      dp2_over_dp1: round(med.dp2Step! / med.rpcStep!),
      dp2_over_dp1_tcp: round(med.dp2TcpStep! / med.rpcStep!),
      dp2_zero_over_dp1: round(med.dp2ZeroStep! / med.rpcStep!),
      dp2_transports: transports,
      allreduce_over_tcp: round(coll.allreduceOverTcp),
      allreduce_shm_over_tcp_stream: round(coll.shmOverTcpStream),
      allreduce_shm_gbps: round(coll.shmGbps),
      optimizer_mem_4_over_1: round(coll.optimizerMem4Over1),
      rpc_pipelined_over_inprocess: round(med.rpcPipelined! / med.inprocess!),
      allreduce_gbps: round(coll.allreduceGbps),
      tcp_gbps: round(coll.tcpGbps),
      optimizer_bytes_per_rank: coll.optimizerBytes,
      // The same ratios on the fastest sample of each side (least disturbed by other load).
      min_ratios: {
        custom_over_builtin: round(low.custom! / low.builtin!),
        rpc_over_inprocess: round(low.rpcStep! / low.inprocess!),
        dp2_over_dp1: round(low.dp2Step! / low.rpcStep!),
        dp2_over_dp1_tcp: round(low.dp2TcpStep! / low.rpcStep!),
        dp2_zero_over_dp1: round(low.dp2ZeroStep! / low.rpcStep!),
        allreduce_over_tcp: round(coll.minRatio),
        allreduce_shm_over_tcp_stream: round(coll.shmMinRatio),
      },
      step_s: {
        inprocess: round(med.inprocess!),
        rpc: round(med.rpcStep!),
        rpc_pipelined: round(med.rpcPipelined!),
        dp2: round(med.dp2Step!),
        dp2_tcp: round(med.dp2TcpStep!),
        dp2_zero: round(med.dp2ZeroStep!),
        fb_builtin: round(med.builtin!),
        fb_custom: round(med.custom!),
      },
      params,
      tokens_per_step: BATCH * SEQ,
      noisy,
      max_load: round(maxLoad, 2),
    };
    log(JSON.stringify(result));
  } finally {
    for (const s of services) await s.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

if (args.has('--collectives')) await collectivesOnly();
else await main();

// bench:hotload — hot-load of a deployment (gateway + one onnxruntime replica process) from an
// object store reached over a network link shaped to 1 Gbit/s: a full fp32 snapshot vs an
// arc_v2 delta of one "training step" against it (issue 14 item 10; bench:serving measures the
// same loads from a local file:// bucket, where the link costs nothing).
//
//   npm run bench:hotload [-- --reps 3] [--rate 1gbit]
//
// The store is moto's S3 server (the test server setup.sh installs) run in its own network
// namespace; the veth pair to it is shaped by tc (a token bucket each way), so the replica's
// s3:// client (AWS_ENDPOINT_URL_S3, inherited) reads every byte through the link. The ~25M-parameter model
// (LLAMA_25M, random bf16-free fp32 weights) is the headline model of bench:serving.
// - anchor (same run, same link): a plain download of the full snapshot's weights file through
//   the same store client; its time is the transfer floor of a full load and gives the link's
//   measured rate.
// - hot-load: signal -> the replica serves the identity (status polled every 5 ms), full then
//   delta, median over reps; the replica's phases (fetch+decode, build, swap) from the ledger.
// Last stdout line: {"bench":"hotload","hotload_delta_over_full_1gbit":..,"hotload_full_1gbit_ms":..,
//   "hotload_delta_1gbit_ms":..,"full_download_1gbit_ms":..,"link_mb_s":..,"full_mb":..,
//   "delta_mb":..,"phases_ms":{..},"noisy":..}

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { dirSnapshot, writeDeltaSnapshot } from '../src/checkpoints/deltas/snapshot.js';
import { openObjectStore } from '../src/checkpoints/object-store/index.js';
import { serializeSafetensors, type TensorMap } from '../src/checkpoints/safetensors.js';
import { DeploymentRegistry } from '../src/deployments/index.js';
import { toHfConfig } from '../src/engine/config.js';
import { initialWeights } from '../src/engine/init.js';
import { TransformerModel } from '../src/engine/model.js';
import { HotLoadClient } from '../src/sdk/deployment-sampler.js';
import { s3ServerCommand } from '../test/support/object-store-servers.js';
import { LLAMA_25M, median, perturbTensors, Reps } from './support/common.js';
import { createShapedLink } from './support/shaped-link.js';

const { values: argv } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    rate: { type: 'string', default: '1gbit' },
  },
});
const REPS = Number(argv.reps);
if (!Number.isInteger(REPS) || REPS < 1) throw new Error('--reps must be a positive integer');
const RATE = argv.rate;

const log = (line: string) => process.stdout.write(`${line}\n`);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const reps = new Reps(log);

async function writeModelDir(
  dir: string,
  config: Record<string, unknown>,
  tensors: TensorMap,
  file = 'model-00000.safetensors',
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeFile(join(dir, file), serializeSafetensors(tensors));
}

/** moto's S3 server inside the link's namespace; resolves with its endpoint. */
async function startStore(
  exec: string[],
  ip: string,
): Promise<{ endpoint: string; child: ChildProcess }> {
  const port = 5000;
  const endpoint = `http://${ip}:${port}`;
  const moto = s3ServerCommand();
  const child = spawn(
    exec[0] as string,
    [...exec.slice(1), moto.command, ...moto.args, '--host', ip, '--port', String(port)],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(`${endpoint}/moto-api/`)
      .then((r) => r.status < 500)
      .catch(() => false);
    if (ok) return { endpoint, child };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`the S3 server did not start at ${endpoint}`);
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) n += (await stat(join(dir, f))).size;
  return n;
}

type Phase = { fetch: number; build: number; swap: number };

async function main(): Promise<void> {
  log(
    `bench:hotload — ${availableParallelism()} cores, load ${loadavg()
      .map((x) => round(x, 2))
      .join(' ')}; link ${RATE}, reps ${REPS}`,
  );
  const tmp = await mkdtemp(join(tmpdir(), 'temper-bench-hotload-'));
  const link = createShapedLink(RATE);
  let server: ChildProcess | undefined;
  const registry = new DeploymentRegistry(undefined, { auth: { verifyKey: async () => null } });
  try {
    const store = await startStore(link.exec, link.remoteIp);
    server = store.child;
    // moto checks no signatures: a path-style PUT makes the bucket
    const made = await fetch(`${store.endpoint}/bench`, { method: 'PUT' });
    if (!made.ok) throw new Error(`create bucket: HTTP ${made.status} ${await made.text()}`);
    // The replica process inherits these: its s3:// client talks to the server over the link.
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_S3: store.endpoint,
      AWS_ACCESS_KEY_ID: 'bench',
      AWS_SECRET_ACCESS_KEY: 'bench',
      AWS_REGION: 'us-east-1',
    });
    const bucketUrl = 's3://bench/snapshots';
    const bucket = await openObjectStore(bucketUrl);

    const cfg = LLAMA_25M;
    const config = toHfConfig(cfg);
    const base = initialWeights(new TransformerModel(cfg, { threads: 1 }), 7, { normJitter: 0.1 });
    const baseDir = join(tmp, 'base');
    await writeModelDir(baseDir, config, base, 'model.safetensors');
    await writeFile(
      join(baseDir, 'tokenizer_config.json'),
      await readFile(
        new URL(
          '../catalog/accounts/temper/models/byte-lm-3m/tokenizer_config.json',
          import.meta.url,
        ),
      ),
    );

    const upload = async (dir: string, prefix: string) => {
      for (const f of await readdir(dir))
        await bucket.put(`${prefix}/${f}`, await readFile(join(dir, f)));
    };
    let fullBytes = 0;
    let deltaBytes = 0;
    for (let r = 0; r < REPS; r++) {
      const full = perturbTensors(base, 100 + r);
      const step = perturbTensors(full, 200 + r);
      const fullDir = join(tmp, `full-${r}`);
      const nextDir = join(tmp, `next-${r}`);
      const deltaDir = join(tmp, `delta-${r}`);
      await writeModelDir(fullDir, config, full);
      await writeModelDir(nextDir, config, step);
      await writeDeltaSnapshot({
        previous: dirSnapshot(fullDir),
        next: dirSnapshot(nextDir),
        previousSnapshotIdentity: `full-${r}`,
        target: { dir: deltaDir },
      });
      fullBytes = await dirBytes(fullDir);
      deltaBytes = await dirBytes(deltaDir);
      await upload(fullDir, `full-${r}`);
      await upload(deltaDir, `delta-${r}`);
    }
    log(
      `snapshots: full ${round(fullBytes / 1e6, 2)} MB, arc_v2 delta ${round(deltaBytes / 1e6, 2)} MB`,
    );

    const baseModel = 'accounts/temper/models/llama-25m';
    const d = await registry.create({
      account: 'bench',
      deploymentId: 'hotload-link',
      baseModel,
      baseModelDir: baseDir,
      hotLoad: { bucketUrl },
      replica: { threads: 1 },
    });
    const url = d.gatewayUrl as string;
    const headers = {
      'content-type': 'application/json',
      'fireworks-model': baseModel,
      'fireworks-deployment': d.name,
      ...registry.authHeaders(d.name),
    };
    const hl = new HotLoadClient({
      inferenceUrl: url,
      deployment: d.name,
      model: baseModel,
      apiKey: registry.accessToken(d.name),
    });
    const timeLoad = async (identity: string, previous?: string) => {
      const t = performance.now();
      await hl.hotload(identity, previous ? { previousSnapshotIdentity: previous } : {});
      await hl.waitForIdentity(identity, 300_000, 5);
      return performance.now() - t;
    };
    const phasesOf = async (identity: string): Promise<Phase> => {
      const res = await fetch(`${url}/v1/${d.name}/ledger`, { headers });
      const ledger = (await res.json()) as {
        snapshots: { identity: string; replicas: { timing_ms: Phase | null }[] }[];
      };
      const t = ledger.snapshots.find((s) => s.identity === identity)?.replicas[0]?.timing_ms;
      if (!t) throw new Error(`the ledger has no timing for ${identity}`);
      return t;
    };

    const download: number[] = [];
    const fullMs: number[] = [];
    const deltaMs: number[] = [];
    const phases = { full: [] as Phase[], delta: [] as Phase[] };
    for (let r = 0; r < REPS; r++) {
      const t = performance.now();
      const bytes = (await bucket.get(`full-${r}/model-00000.safetensors`)).length;
      download.push(performance.now() - t);
      if (bytes === 0) throw new Error('empty download');
      fullMs.push(await timeLoad(`full-${r}`));
      deltaMs.push(await timeLoad(`delta-${r}`, `full-${r}`));
      phases.full.push(await phasesOf(`full-${r}`));
      phases.delta.push(await phasesOf(`delta-${r}`));
    }
    const weightsBytes = (await bucket.stat('full-0/model-00000.safetensors'))?.size ?? 0;
    const full_download_ms = reps.settle('download', download);
    const hotload_full_ms = reps.settle('hot-load full', fullMs);
    const hotload_delta_ms = reps.settle('hot-load delta', deltaMs);
    const pick = (xs: Phase[], k: keyof Phase) => round(median(xs.map((x) => x[k])));
    const phases_ms = {
      full: {
        fetch: pick(phases.full, 'fetch'),
        build: pick(phases.full, 'build'),
        swap: pick(phases.full, 'swap'),
      },
      delta: {
        fetch: pick(phases.delta, 'fetch'),
        build: pick(phases.delta, 'build'),
        swap: pick(phases.delta, 'swap'),
      },
    };
    const link_mb_s = weightsBytes / 1e6 / (full_download_ms / 1000);
    log(
      `anchor: download of the full weights (${round(weightsBytes / 1e6, 2)} MB) ${round(full_download_ms)} ms = ${round(link_mb_s)} MB/s (${RATE} is ${round(rateMbS(RATE))} MB/s)`,
    );
    log(
      `hot-load over ${RATE}: full ${round(hotload_full_ms)} ms, delta ${round(hotload_delta_ms)} ms; delta/full ${round(hotload_delta_ms / hotload_full_ms, 3)}`,
    );
    log(
      `  replica phases (median ms): full ${JSON.stringify(phases_ms.full)}, delta ${JSON.stringify(phases_ms.delta)}`,
    );
    if ((loadavg()[0] ?? 0) > availableParallelism()) reps.noisy = true;
    log(
      JSON.stringify({
        bench: 'hotload',
        hotload_delta_over_full_1gbit: round(hotload_delta_ms / hotload_full_ms, 3),
        hotload_full_1gbit_ms: round(hotload_full_ms),
        hotload_delta_1gbit_ms: round(hotload_delta_ms),
        full_download_1gbit_ms: round(full_download_ms),
        link_mb_s: round(link_mb_s),
        rate: RATE,
        full_mb: round(fullBytes / 1e6, 2),
        delta_mb: round(deltaBytes / 1e6, 2),
        phases_ms,
        model: 'llama-25m',
        reps: REPS,
        noisy: reps.noisy,
        load_avg_1m: round(loadavg()[0] ?? 0, 2),
      }),
    );
  } finally {
    await registry.close();
    server?.kill('SIGTERM');
    link.destroy();
    await rm(tmp, { recursive: true, force: true });
  }
}

/** tc's rate (`1gbit`, `500mbit`) in MB/s. */
function rateMbS(rate: string): number {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)bit$/i.exec(rate);
  if (!m) return Number.NaN;
  const scale = { k: 1e3, m: 1e6, g: 1e9 }[(m[2] as string).toLowerCase() as 'k' | 'm' | 'g'];
  return (Number(m[1]) * scale) / 8 / 1e6;
}

await main();

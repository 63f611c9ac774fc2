// One process of bench:trainer's collective measurements, driven over the IPC channel:
// joins a group (TCP forced, or shared memory allowed), times all-reduces of a flat float32 buffer, runs either end of a raw TCP
// stream (the anchor), and reports the optimizer memory one rank holds after a step of the
// 25M model, unsharded (the engine's AdamW) or ZeRO-1 (its shard of the moments only).
import { initialWeights } from '../../src/engine/init.js';
import { TransformerModel } from '../../src/engine/model.js';
import { ProcessGroup, shardLength, tcpStream } from '../../src/trainer/collectives.js';
import { gradViews } from '../../src/trainer/data-parallel.js';
import { serveCommands } from '../../test/support/ipc-peer.js';
import { LLAMA_25M } from './common.js';

type Command =
  | {
      op: 'join';
      rank: number;
      world: number;
      storePort: number;
      prefix: string;
      sharedMemory: boolean;
    }
  | { op: 'allreduce'; floats: number }
  | { op: 'listen' }
  | { op: 'drain'; fd: number; bytes: number }
  | { op: 'send'; port: number; bytes: number }
  | { op: 'optimizer'; sharded: boolean }
  | { op: 'exit' };

let group: ProcessGroup | undefined;
let buffer: Float32Array | undefined;

async function handle(c: Command): Promise<unknown> {
  switch (c.op) {
    case 'join':
      group?.close();
      group = await ProcessGroup.join({
        rank: c.rank,
        world: c.world,
        storeHost: '127.0.0.1',
        storePort: c.storePort,
        prefix: c.prefix,
        host: '127.0.0.1',
        timeoutMs: 120_000,
        sharedMemory: c.sharedMemory,
      });
      return group.transport;
    case 'allreduce': {
      if (!buffer || buffer.length !== c.floats) buffer = new Float32Array(c.floats).fill(1);
      const t0 = performance.now();
      await group!.allReduce([buffer]);
      return (performance.now() - t0) / 1000;
    }
    case 'listen':
      return tcpStream.listen('127.0.0.1');
    case 'drain':
      return tcpStream.drain(c.fd, c.bytes);
    case 'send':
      return tcpStream.send('127.0.0.1', c.port, c.bytes);
    case 'optimizer': {
      const model = new TransformerModel(LLAMA_25M, { threads: 1 });
      model.loadTensors(initialWeights(model, 1234), { partial: true });
      const names = model.trainableNames();
      const n = names.reduce((s, name) => s + model.tensorView(name, 'grad')!.length, 0);
      let shardBytes = 0;
      if (c.sharded) {
        model.releaseOptimizerState();
        const m = new Float32Array(shardLength(n, group!.world));
        const v = new Float32Array(shardLength(n, group!.world));
        const weights = names.map((name) => model.tensorView(name) as Float32Array);
        await group!.zeroStep(gradViews(model), weights, m, v, {
          lr: 1e-5,
          beta1: 0.9,
          beta2: 0.95,
          eps: 1e-8,
          weightDecay: 0,
          gradClip: 0,
          gradScale: 1,
          step: 1,
        });
        shardBytes = m.byteLength + v.byteLength;
      } else {
        await model.optimStepAsync({ learningRate: 1e-5 });
      }
      // What the engine still holds (none after a release) plus this rank's shard.
      let engineBytes = 0;
      for (const name of names) {
        const s = model.getOptimizerState(name);
        engineBytes += (s?.m.byteLength ?? 0) + (s?.v.byteLength ?? 0);
      }
      return { params: n, engineBytes, shardBytes, bytes: engineBytes + shardBytes };
    }
    case 'exit':
      group?.close();
      setImmediate(() => process.exit(0));
      return null;
  }
}

serveCommands(handle);

// Child process for the kill -9 test: commits checkpoint `ckpt-a`, then saves the larger
// `ckpt-b` slowly (throttled store, one rank at a time) and reports progress on stdout so the
// parent can kill it mid-save. Usage: tsx slow-writer.ts <store root>
import { DcpCheckpoints } from '../../src/checkpoints/dcp/index.js';
import { fileStore, randomData, throttled } from './helpers.js';

export function stateA() {
  return new Map([
    ['weights/a', { shape: [1000, 3], data: randomData(3000, 1) }],
    ['weights/b', { shape: [17], data: randomData(17, 2) }],
  ]);
}

async function main(root: string): Promise<void> {
  const store = await fileStore(root);
  process.stdout.write(`pid ${process.pid}\n`);
  await new DcpCheckpoints(store).save('ckpt-a', {
    tensors: stateA(),
    step: 1,
    state: { cursor: 7 },
  });
  process.stdout.write('committed ckpt-a\n');
  const big = new Map([
    ['weights/w', { shape: [4096, 1024], data: randomData(4096 * 1024, 3) }],
    ['optim/w/exp_avg', { shape: [4096, 1024], data: randomData(4096 * 1024, 4) }],
  ]);
  const slow = new DcpCheckpoints(throttled(store, 8 << 20), { concurrency: 1 });
  process.stdout.write('saving ckpt-b\n');
  await slow.save('ckpt-b', { tensors: big, step: 2, worldSize: 4 });
  process.stdout.write('committed ckpt-b\n');
}

if (process.argv[1]?.endsWith('slow-writer.ts')) {
  const root = process.argv[2];
  if (!root) throw new Error('usage: slow-writer.ts <store root>');
  await main(root);
}

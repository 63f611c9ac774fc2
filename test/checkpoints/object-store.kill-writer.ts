// Child process for object-store.file.test.ts: starts a streamed put into a file:// store,
// says "writing" once part of the body is written, and then hangs until it is killed.
import { Readable } from 'node:stream';
import { FileObjectStore } from '../../src/checkpoints/object-store/file.js';

const [root, key] = process.argv.slice(2);
if (!root || !key) throw new Error('usage: object-store.kill-writer.ts ROOT KEY');
const store = new FileObjectStore(root);
const body = Readable.from(
  (async function* () {
    for (let i = 0; i < 16; i++) yield Buffer.alloc(64 * 1024, i);
    process.stdout.write('writing\n');
    await new Promise(() => {}); // never finishes: the parent kills us here
  })(),
);
void store.put(key, body, { ifAbsent: true });

/**
 * The runner inside a JS evaluator's sandbox, as source text (written into the job's work
 * directory, so the compiled and the tsx-run platform ship it alike). Its first stdin line is
 * `{"env":{…}}`, the evaluator's own environment variables (the account's secrets), set before
 * the evaluator loads. It then loads the evaluator,
 * says `{"ready":true}` (or `{"fatal":…}`), then reads one JSON request a line from stdin,
 * `{"id","rollout"}`, calls the evaluator on each in order and writes one JSON line per
 * result, `{"id","ok":true,"value"}` or `{"id","ok":false,"error","kind"}`, to the original
 * stdout. The evaluator's own console output goes to stderr so it cannot break the protocol.
 * Non-finite numbers are sent as {"$num":"NaN"} so the platform sees what was returned.
 */
export const JS_RUNNER_FILE = 'js-runner.mjs';

export const JS_RUNNER_SOURCE = String.raw`
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const protocolWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);

function encode(_key, value) {
  if (typeof value === 'number' && !Number.isFinite(value)) return { $num: String(value) };
  if (typeof value === 'bigint') return Number(value);
  return value;
}
function send(message) {
  protocolWrite(JSON.stringify(message, encode) + '\n');
}
function kindOf(error) {
  const text = String(error && error.message ? error.message : error);
  if (error instanceof RangeError && /allocation failed|Invalid array length|Invalid typed array length|out of memory/i.test(text)) return 'memory';
  if (error && (error.code === 'EAGAIN' || error.errno === -11) && /spawn|fork/i.test(text + (error.syscall || ''))) return 'processes';
  if (error && typeof error.code === 'string' && /^(ECONNREFUSED|ENETUNREACH|EAI_AGAIN|ENOTFOUND|EHOSTUNREACH)$/.test(error.code)) return 'network';
  return 'error';
}

// Processes alive under this one (pid 1 of the sandbox: orphans come here too).
function strays() {
  let n = 0;
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const text = readFileSync('/proc/self/task/' + tid + '/children', 'utf8').trim();
      if (text) n += text.split(' ').length;
    }
  } catch {}
  return n;
}
function withStrays(message) {
  const n = strays();
  return n > 0 ? { ...message, strays: n } : message;
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
const first = await lines.next();
if (!first.done) Object.assign(process.env, JSON.parse(first.value).env);

const [entry, exportName] = process.argv.slice(2);
let evaluate;
try {
  const mod = await import(pathToFileURL(entry).href);
  evaluate = exportName ? mod[exportName] : (mod.evaluate ?? mod.default);
  if (typeof evaluate !== 'function')
    throw new Error(exportName
      ? 'the evaluator module has no exported function ' + exportName
      : 'the evaluator module must export a function (default or evaluate)');
} catch (error) {
  send({ fatal: String(error && error.message ? error.message : error) });
  process.exit(3);
}
send({ ready: true });

for (let next = await lines.next(); !next.done; next = await lines.next()) {
  const line = next.value;
  if (!line) continue;
  const { id, rollout } = JSON.parse(line);
  try {
    const value = await evaluate(rollout);
    send(withStrays({ id, ok: true, value: value === undefined ? null : value }));
  } catch (error) {
    send(withStrays({ id, ok: false, error: String(error && error.message ? error.message : error), kind: kindOf(error) }));
  }
}
process.exit(0);
`;

/**
 * bench:evaluators — what the evaluator sandbox costs on warm, batched calls.
 *
 * Scores 1,000 rollouts with a trivial Python evaluator (`evaluate(row)` comparing the
 * completion with the ground truth) through the sandbox (bubblewrap, rlimits, its own uid;
 * the process already started, all 1,000 rollouts queued at once) against the anchor: the same
 * function in one plain Python process (no sandbox, no runner) fed the same 1,000 rollouts as
 * JSON lines on its stdin, answering one JSON line each, driven and timed the same way. Rounds
 * alternate; medians are reported. Also printed: the sandbox's cold start (open → loaded) and
 * the function's own cost for 1,000 calls inside one process (no I/O at all).
 *
 *   npm run bench:evaluators [-- --rounds 5]
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { openObjectStore } from '../src/checkpoints/object-store/index.js';
import { openEvaluator, sandboxSettings } from '../src/evaluators/index.js';
import { openStore } from '../src/store/index.js';

const ROLLOUTS = 1000;
const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 5;

const EVALUATOR = `
def evaluate(row):
    answer = row["completion"].strip().split()[-1] if row["completion"].strip() else ""
    return {"score": 1.0 if answer == str(row["groundTruth"]) else 0.0, "reason": "last word"}
`;

const PLAIN = `
import importlib.util, json, os, sys, time
spec = importlib.util.spec_from_file_location("evaluator", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
if len(sys.argv) > 2:
    rows = [json.loads(line)["rollout"] for line in open(sys.argv[2])]
    start = time.perf_counter()
    for row in rows:
        module.evaluate(row)
    print((time.perf_counter() - start) * 1000)
    sys.exit(0)
# The same I/O as the sandbox's runner: the answers to one read go out in one write.
pending = b""
while True:
    chunk = os.read(0, 1 << 16)
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\\n")
    out = [
        (json.dumps({"id": r["id"], "value": module.evaluate(r["rollout"])}) + "\\n").encode()
        for r in map(json.loads, filter(None, lines))
    ]
    if out:
        os.write(1, b"".join(out))
`;

const rollouts = Array.from({ length: ROLLOUTS }, (_, i) => ({
  messages: [{ role: 'user', content: `What is ${i} + 1?` }],
  completion: `The answer is ${i % 3 === 0 ? i : i + 1}`,
  groundTruth: String(i + 1),
  row: { index: i },
}));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'temper-bench-evaluators-'));
  chmodSync(dir, 0o711);
  const store = openStore(`sqlite://${join(dir, 'temper.db')}`);
  await store.migrate();
  const artifacts = await openObjectStore(`file://${join(dir, 'artifacts')}`);
  const key = 'accounts/bench/evaluators/trivial/files/main.py';
  await artifacts.put(key, EVALUATOR);
  await store.create('evaluators', 'bench', 'trivial', {
    language: 'python',
    files: [{ path: 'main.py', key, sha256: createHash('sha256').update(EVALUATOR).digest('hex') }],
  });
  // No requirements and no base packages: the interpreter itself, as in the plain process.
  const settings = sandboxSettings({ workDir: join(dir, 'work'), basePackages: [] });
  const coldStart = performance.now();
  const evaluator = await openEvaluator(
    'accounts/bench/evaluators/trivial',
    { store, artifacts, settings },
    { wallMs: 60_000 },
  );
  const coldMs = performance.now() - coldStart;

  const evaluatorFile = join(dir, 'main.py');
  const plainFile = join(dir, 'plain.py');
  const inputFile = join(dir, 'rollouts.jsonl');
  writeFileSync(evaluatorFile, EVALUATOR);
  writeFileSync(plainFile, PLAIN);
  writeFileSync(
    inputFile,
    rollouts.map((rollout, id) => JSON.stringify({ id, rollout })).join('\n'),
  );
  const plain = spawn(settings.python, [plainFile, evaluatorFile], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: plain.stdout });
  let waiting: { left: number; done: () => void } | null = null;
  const plainScores: number[] = [];
  lines.on('line', (line) => {
    plainScores.push((JSON.parse(line) as { value: { score: number } }).value.score);
    if (waiting && --waiting.left === 0) waiting.done();
  });
  const viaPlain = () =>
    new Promise<void>((resolve) => {
      waiting = { left: ROLLOUTS, done: resolve };
      plain.stdin.write(
        rollouts.map((rollout, id) => `${JSON.stringify({ id, rollout })}\n`).join(''),
      );
    });
  const viaSandbox = () => Promise.all(rollouts.map((r) => evaluator.evaluate(r)));

  // Warm both (imports, JIT of the JSON paths), and check they agree.
  const warm = await viaSandbox();
  plainScores.length = 0;
  await viaPlain();
  if (warm.some((e, i) => e.score !== plainScores[i] || !e.valid))
    throw new Error('the sandbox and the plain process disagree on a score');

  const sandboxMs: number[] = [];
  const plainMs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t = performance.now();
    await viaSandbox();
    sandboxMs.push(performance.now() - t);
    plainScores.length = 0;
    t = performance.now();
    await viaPlain();
    plainMs.push(performance.now() - t);
  }
  const inProcess = await new Promise<number>((resolve) => {
    const p = spawn(settings.python, [plainFile, evaluatorFile, inputFile]);
    let out = '';
    p.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    p.on('close', () => resolve(Number(out.trim())));
  });
  plain.stdin.end();
  await evaluator.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });

  const s = median(sandboxMs);
  const p = median(plainMs);
  console.log(
    `sandbox (warm, batched): ${sandboxMs.map((x) => x.toFixed(1)).join(' ')} ms per ${ROLLOUTS}`,
  );
  console.log(
    `plain Python process:    ${plainMs.map((x) => x.toFixed(1)).join(' ')} ms per ${ROLLOUTS}`,
  );
  console.log(
    `sandbox cold start ${coldMs.toFixed(0)} ms; the function alone, in-process: ${inProcess.toFixed(2)} ms`,
  );
  console.log(
    JSON.stringify({
      bench: 'evaluators',
      rollouts: ROLLOUTS,
      rounds,
      sandbox_ms: Number(s.toFixed(1)),
      plain_ms: Number(p.toFixed(1)),
      cold_start_ms: Math.round(coldMs),
      in_process_ms: Number(inProcess.toFixed(2)),
      sandbox_over_plain: Number((s / p).toFixed(3)),
    }),
  );
}

await main();

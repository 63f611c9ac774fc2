#!/usr/bin/env -S npx tsx
// Writes the bundled demo SFT dataset: arithmetic questions answered in a style the base
// model has not seen ("The answer is N."), so a short fine-tune visibly changes behaviour.
//   npx tsx scripts/make-demo-dataset.ts
import { writeFileSync } from 'node:fs';
import { catalogDatasetPath, DEMO_DATASET } from '../src/catalog/bundled.js';
import { arithmeticProblem, seededRandom } from '../src/datasets/synthetic.js';

const r = seededRandom(777);
const lines: string[] = [];
for (let i = 0; i < 256; i++) {
  const p = arithmeticProblem(r);
  const messages = [
    { role: 'user', content: `What is ${p.a} ${p.op} ${p.b}?` },
    { role: 'assistant', content: `The answer is ${p.result}.` },
  ];
  lines.push(JSON.stringify({ messages }));
}
const path = catalogDatasetPath(DEMO_DATASET.name);
writeFileSync(path, `${lines.join('\n')}\n`);
console.log(`wrote ${lines.length} examples to ${path}`);

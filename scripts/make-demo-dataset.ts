#!/usr/bin/env -S npx tsx
// Writes the bundled demo SFT dataset: capital and colour questions answered in a chatty
// style the base model has not seen ("Sure! ... Anything else?"), so a short fine-tune
// visibly changes how the model answers.
//   npx tsx scripts/make-demo-dataset.ts
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { catalogDatasetPath, DEMO_DATASET } from '../src/catalog/bundled.js';
import { CAPITALS, COLORS, seededRandom } from '../src/datasets/synthetic.js';

const r = seededRandom(777);
const capitals = CAPITALS;
const colors = COLORS;
const lines: string[] = [];
for (let i = 0; i < 128; i++) {
  const [question, answer] =
    r() < 0.6
      ? (([country, city]) => [
          `What is the capital of ${country}?`,
          `The capital of ${country} is ${city}.`,
        ])(capitals[Math.floor(r() * capitals.length)]!)
      : (([thing, color]) => [`What color is the ${thing}?`, `The ${thing} is ${color}.`])(
          colors[Math.floor(r() * colors.length)]!,
        );
  const messages = [
    { role: 'user', content: question },
    { role: 'assistant', content: `Sure! ${answer} Anything else?` },
  ];
  lines.push(JSON.stringify({ messages }));
}
const path = catalogDatasetPath(DEMO_DATASET.name);
mkdirSync(dirname(path), { recursive: true });
writeFileSync(path, `${lines.join('\n')}\n`);
console.log(`wrote ${lines.length} examples to ${path}`);

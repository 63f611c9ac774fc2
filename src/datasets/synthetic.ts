// Deterministic synthetic text for the bundled byte-level base model: arithmetic, templated
// sentences, a few facts and chat-formatted question/answer turns. Small models learn these
// regularities quickly, which makes fine-tuning effects easy to see.

export { seededRandom } from '../util/seeded-random.js';

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

const ADJECTIVES = [
  'small',
  'quick',
  'lazy',
  'happy',
  'brown',
  'quiet',
  'bright',
  'old',
  'young',
  'clever',
];
const ANIMALS = ['cat', 'dog', 'fox', 'bird', 'horse', 'mouse', 'rabbit', 'owl', 'bear', 'frog'];
const VERBS = ['sat', 'ran', 'slept', 'jumped', 'walked', 'waited', 'played', 'sang'];
const PLACES = ['mat', 'garden', 'river', 'hill', 'house', 'forest', 'road', 'tree'];
const PREPOSITIONS = ['on', 'near', 'by', 'under', 'behind', 'over'];
export const CAPITALS: readonly [string, string][] = [
  ['France', 'Paris'],
  ['Spain', 'Madrid'],
  ['Italy', 'Rome'],
  ['Germany', 'Berlin'],
  ['Japan', 'Tokyo'],
  ['Egypt', 'Cairo'],
  ['Peru', 'Lima'],
  ['Canada', 'Ottawa'],
  ['Kenya', 'Nairobi'],
  ['Norway', 'Oslo'],
];
export const COLORS: readonly [string, string][] = [
  ['sky', 'blue'],
  ['grass', 'green'],
  ['snow', 'white'],
  ['coal', 'black'],
  ['sun', 'yellow'],
  ['blood', 'red'],
];

export type Op = '+' | '-' | '*';

export function arithmeticProblem(r: Rand): { a: number; b: number; op: Op; result: number } {
  const op = pick<Op>(r, ['+', '+', '-', '*']);
  if (op === '*') {
    const a = int(r, 2, 12);
    const b = int(r, 2, 12);
    return { a, b, op, result: a * b };
  }
  const a = int(r, 0, 99);
  const b = int(r, 0, 99);
  if (op === '-') return a >= b ? { a, b, op, result: a - b } : { a: b, b: a, op, result: b - a };
  return { a, b, op, result: a + b };
}

function sentence(r: Rand): string {
  return `The ${pick(r, ADJECTIVES)} ${pick(r, ANIMALS)} ${pick(r, VERBS)} ${pick(r, PREPOSITIONS)} the ${pick(r, PLACES)}.`;
}

function fact(r: Rand): string {
  if (r() < 0.6) {
    const [country, city] = pick(r, CAPITALS);
    return `The capital of ${country} is ${city}.`;
  }
  const [thing, color] = pick(r, COLORS);
  return `The ${thing} is ${color}.`;
}

function arithmeticLines(r: Rand): string {
  const lines: string[] = [];
  const n = int(r, 3, 8);
  for (let i = 0; i < n; i++) {
    const p = arithmeticProblem(r);
    lines.push(`${p.a} ${p.op} ${p.b} = ${p.result}`);
  }
  return lines.join('\n');
}

/** A chat exchange in the `simple` renderer's layout, minus the end-of-turn token. */
export function chatExchange(r: Rand): { user: string; assistant: string } {
  const kind = r();
  if (kind < 0.5) {
    const p = arithmeticProblem(r);
    return {
      user: `What is ${p.a} ${p.op} ${p.b}?`,
      assistant: `${p.a} ${p.op} ${p.b} = ${p.result}`,
    };
  }
  if (kind < 0.8) {
    const [country, city] = pick(r, CAPITALS);
    return {
      user: `What is the capital of ${country}?`,
      assistant: `The capital of ${country} is ${city}.`,
    };
  }
  const [thing, color] = pick(r, COLORS);
  return { user: `What color is the ${thing}?`, assistant: `The ${thing} is ${color}.` };
}

export type DocumentPart = { text: string } | { endOfTurn: true };

/** One pretraining document as text parts and end-of-turn markers (rendered to tokens by the caller). */
export function pretrainingDocument(r: Rand): DocumentPart[] {
  const kind = r();
  if (kind < 0.3) return [{ text: arithmeticLines(r) }];
  if (kind < 0.55)
    return [{ text: Array.from({ length: int(r, 2, 5) }, () => sentence(r)).join(' ') }];
  if (kind < 0.7) return [{ text: Array.from({ length: int(r, 1, 3) }, () => fact(r)).join(' ') }];
  const parts: DocumentPart[] = [];
  const turns = int(r, 1, 3);
  for (let i = 0; i < turns; i++) {
    const { user, assistant } = chatExchange(r);
    parts.push(
      { text: `User: ${user}\nAssistant: ${assistant}` },
      { endOfTurn: true },
      { text: '\n' },
    );
  }
  return parts;
}

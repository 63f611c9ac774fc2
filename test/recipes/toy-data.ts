// Small datasets for the recipe tests, written into each test's temporary folder.
import { writeFile } from 'node:fs/promises';
import { CAPITALS } from '../../src/datasets/synthetic.js';

/** Preference pairs: the right capital is chosen, the next country's capital rejected. */
export async function writePreferencePairs(path: string): Promise<string> {
  const rows = CAPITALS.map(([country, capital], i) => {
    const wrong = CAPITALS[(i + 1) % CAPITALS.length]?.[1] as string;
    const user = { role: 'user', content: `What is the capital of ${country}?` };
    return i % 2 === 0
      ? {
          chosen: { messages: [user, { role: 'assistant', content: `${capital}.` }] },
          rejected: { messages: [user, { role: 'assistant', content: `${wrong}.` }] },
        }
      : {
          input: { messages: [user] },
          preferred_output: [{ role: 'assistant', content: `${capital}.` }],
          non_preferred_output: [{ role: 'assistant', content: `${wrong}.` }],
        };
  });
  await writeFile(path, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  return path;
}

/**
 * RL prompts whose optimum is known: the answer is the sentence "The capital of X is Y." the
 * bundled model half-knows; prefix_match gives credit per correct leading character, 1 for
 * the whole sentence.
 */
export async function writeCapitalPrompts(path: string): Promise<string> {
  const rows = CAPITALS.map(([country, capital]) => ({
    messages: [{ role: 'user', content: `What is the capital of ${country}?` }],
    expected_answer: `The capital of ${country} is ${capital}.`,
  }));
  await writeFile(path, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  return path;
}

/** One RL prompt (the policy only has to sharpen on it): the answer sentence for France. */
export async function writeOnePrompt(path: string): Promise<string> {
  const row = {
    messages: [{ role: 'user', content: 'What is the capital of France?' }],
    expected_answer: 'The capital of France is Paris.',
  };
  await writeFile(path, `${JSON.stringify(row)}\n`);
  return path;
}

/**
 * Recipe config files: JSON or YAML (JSON is read by the YAML parser too, so both get the same
 * positions). A syntax error, and each field the recipe's schema refuses, is reported with the
 * file's line number.
 */
import { readFile } from 'node:fs/promises';
import { isNode, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { RecipeError } from './errors.js';

export async function readRecipeConfigFile<S extends z.ZodType>(
  recipe: string,
  schema: S,
  file: string,
  overrides: Readonly<Record<string, unknown>> = {},
): Promise<z.output<S>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new RecipeError(`cannot read config file ${file}: ${(error as Error).message}`);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const syntax = doc.errors[0];
  if (syntax) {
    const line = lineCounter.linePos(syntax.pos[0]).line;
    throw new RecipeError(`${file}:${line}: ${syntax.message.split('\n')[0]}`);
  }
  const value: unknown = doc.toJS();
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new RecipeError(
      `${file}: a recipe config is a mapping of fields (got ${Array.isArray(value) ? 'a list' : typeof value})`,
    );
  const parsed = schema.safeParse({ ...(value as object), ...overrides });
  if (parsed.success) return parsed.data;
  // the line of the deepest part of the issue's path that is in the file
  const where = (issue: z.core.$ZodIssue): string => {
    const path: unknown[] = [...issue.path];
    if (issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined) path.push(issue.keys[0]);
    for (let n = path.length; n > 0; n--) {
      const node = doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return `:${lineCounter.linePos(node.range[0]).line}`;
    }
    return '';
  };
  throw new RecipeError(
    parsed.error.issues
      .map(
        (i) => `${file}${where(i)}: ${recipe} config ${i.path.join('.') || '(root)'}: ${i.message}`,
      )
      .join('\n'),
  );
}

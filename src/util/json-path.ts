// Paths into parsed JSON, for error messages that name the offending field the way a user
// wrote it: `messages[2].tool_calls[0].function`.

/** `root` followed by the path: `[i]` for array indices, `.name` for keys. */
export function jsonPath(root: string, path: readonly PropertyKey[]): string {
  let out = root;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `.${String(p)}`;
  return out;
}

/** The value at `path` in `root`, or undefined where the path leaves the data. */
export function valueAtPath(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

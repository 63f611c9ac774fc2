/** Splitting text on a fixed set of literal tokens (special / added tokens). */

export type Piece = { kind: 'text'; text: string } | { kind: 'token'; text: string };

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A splitter that finds the given literal tokens in text, leftmost first and, among tokens
 * starting at the same place, longest first (the rule HuggingFace's added-token matcher uses).
 */
export class LiteralSplitter {
  private readonly pattern: RegExp | null;

  constructor(tokens: Iterable<string>) {
    const list = [...new Set(tokens)].filter((t) => t.length > 0);
    list.sort((a, b) => b.length - a.length || (a < b ? -1 : a > b ? 1 : 0));
    this.pattern = list.length === 0 ? null : new RegExp(list.map(escapeRegExp).join('|'), 'gu');
  }

  split(text: string): Piece[] {
    if (this.pattern === null || text.length === 0) {
      return text.length === 0 ? [] : [{ kind: 'text', text }];
    }
    const out: Piece[] = [];
    let last = 0;
    for (const m of text.matchAll(this.pattern)) {
      const start = m.index;
      if (start > last) out.push({ kind: 'text', text: text.slice(last, start) });
      out.push({ kind: 'token', text: m[0] });
      last = start + m[0].length;
    }
    if (last < text.length) out.push({ kind: 'text', text: text.slice(last) });
    return out;
  }
}

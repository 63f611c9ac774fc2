import type { DatasetKind } from './validate.js';

/**
 * The kind the first JSON line of a dataset looks like (validation then says what is wrong,
 * by line): preference fields make DPO, a conversation ending with an assistant turn SFT,
 * anything else RFT prompts. Reads at most the first MiB.
 */
export function detectKind(bytes: Uint8Array): DatasetKind {
  const text = Buffer.from(bytes.subarray(0, 1 << 20)).toString('utf8');
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      return 'sft';
    }
    if (typeof row !== 'object' || row === null) return 'sft';
    const r = row as Record<string, unknown>;
    if ('preferred_output' in r || 'non_preferred_output' in r || 'chosen' in r) return 'dpo';
    const messages = Array.isArray(r.messages) ? r.messages : [];
    const last = messages[messages.length - 1] as { role?: unknown } | undefined;
    return last?.role === 'assistant' ? 'sft' : 'rft';
  }
  return 'sft';
}

// Token sampling from one log-softmax row: temperature, top-k, top-p (nucleus), seeded RNG.

export interface SamplingParams {
  temperature: number;
  topK: number;
  topP: number;
}

/** A small deterministic PRNG (splitmix32) so a seed reproduces a completion. */
export function createRng(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;
  };
}

/** Picks a token from `row` (log-probabilities over the vocabulary). */
export function sampleToken(row: Float32Array, p: SamplingParams, rng: () => number): number {
  const V = row.length;
  if (p.temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if ((row[i] as number) > (row[best] as number)) best = i;
    return best;
  }
  let ids = Array.from({ length: V }, (_, i) => i);
  ids.sort((a, b) => (row[b] as number) - (row[a] as number) || a - b);
  if (p.topK > 0 && p.topK < V) ids = ids.slice(0, p.topK);
  const max = row[ids[0] as number] as number;
  let weights = ids.map((i) => Math.exp(((row[i] as number) - max) / p.temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (p.topP < 1) {
    let acc = 0;
    let keep = 0;
    while (keep < ids.length) {
      acc += (weights[keep] as number) / total;
      keep++;
      if (acc >= p.topP) break;
    }
    ids = ids.slice(0, keep);
    weights = weights.slice(0, keep);
    total = weights.reduce((a, b) => a + b, 0);
  }
  let u = rng() * total;
  for (let i = 0; i < ids.length; i++) {
    u -= weights[i] as number;
    if (u < 0) return ids[i] as number;
  }
  return ids[ids.length - 1] as number;
}

/** The k most likely tokens of a row, most likely first. */
export function topLogprobs(row: Float32Array, k: number): { token: number; logprob: number }[] {
  if (k <= 0) return [];
  const out: { token: number; logprob: number }[] = [];
  for (let i = 0; i < row.length; i++) {
    const lp = row[i] as number;
    if (out.length < k || lp > (out[out.length - 1] as { logprob: number }).logprob) {
      out.push({ token: i, logprob: lp });
      out.sort((a, b) => b.logprob - a.logprob || a.token - b.token);
      if (out.length > k) out.pop();
    }
  }
  return out;
}

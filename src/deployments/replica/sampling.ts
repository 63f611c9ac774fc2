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

// Scratch for the ordering below: one 64-bit key per token (high word: the log-prob mapped so
// that larger sorts first, low word: the token id), sorted natively without a comparator.
let keys = new BigUint64Array(0);
let keyWords = new Uint32Array(0);
/** The low word's index within a key (0 on little-endian machines). */
const lo = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;

/**
 * Token ids by decreasing log-prob, ties by increasing id: the order of
 * `sort((a, b) => row[b] - row[a] || a - b)`, from one native sort of packed keys.
 */
function descendingOrder(row: Float32Array, limit: number): number[] {
  const V = row.length;
  if (keys.length < V) {
    keys = new BigUint64Array(V);
    keyWords = new Uint32Array(keys.buffer);
  }
  const bits = new Uint32Array(row.buffer, row.byteOffset, V);
  const k = keys.subarray(0, V);
  for (let i = 0; i < V; i++) {
    let b = bits[i] as number;
    if (b === 0x80000000) b = 0; // -0 ties with +0, as in the comparator
    // ascending-sortable image of the float, then inverted: larger log-probs first
    const asc = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
    keyWords[2 * i + lo] = i;
    keyWords[2 * i + 1 - lo] = ~asc >>> 0;
  }
  k.sort();
  const n = Math.min(limit, V);
  const ids = new Array<number>(n);
  for (let i = 0; i < n; i++) ids[i] = keyWords[2 * i + lo] as number;
  return ids;
}

/** Picks a token from `row` (log-probabilities over the vocabulary). */
export function sampleToken(row: Float32Array, p: SamplingParams, rng: () => number): number {
  return sampleWithLogprob(row, p, rng).token;
}

/**
 * Picks a token from `row` and gives its log-probability under the distribution it was drawn
 * from (temperature, top-k and top-p applied): the behaviour policy's logprob an RL loss wants,
 * which equals the row's own only at temperature 1 without truncation. Greedy picks have 0.
 */
export function sampleWithLogprob(
  row: Float32Array,
  p: SamplingParams,
  rng: () => number,
): { token: number; samplingLogprob: number } {
  const V = row.length;
  if (p.temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if ((row[i] as number) > (row[best] as number)) best = i;
    return { token: best, samplingLogprob: 0 };
  }
  let ids = descendingOrder(row, p.topK > 0 && p.topK < V ? p.topK : V);
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
  let pick = ids.length - 1;
  for (let i = 0; i < ids.length; i++) {
    u -= weights[i] as number;
    if (u < 0) {
      pick = i;
      break;
    }
  }
  return {
    token: ids[pick] as number,
    samplingLogprob: Math.log((weights[pick] as number) / total),
  };
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

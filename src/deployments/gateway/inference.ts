// Completions and chat completions over the replicas: one replica generation per choice, stop
// strings cut on the text, OpenAI's response and stream shapes, usage as OpenAI counts it, and
// Fireworks' extensions (raw_output, per-token content logprobs, perf_metrics).
//
// Every way a generation ends early goes through Upstream.stop(): a stop string, the client
// leaving (before or during the replica's answer), another choice failing. See upstream.ts for
// why that never waits on the replica.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Renderer, Tokenizer } from '../../tokenizers/index.js';
import type { GenerateEvent } from '../replica/runtime.js';
import { GatewayError } from './errors.js';
import type { InferenceRequest } from './requests.js';
import {
  type Alt,
  legacyLogprobs,
  parseToolCalls,
  type TokenSpelling,
  type ToolCallOut,
} from './shapes.js';
import { Upstream, type UpstreamReplica } from './upstream.js';

export interface InferenceDeps {
  tokenizer: Tokenizer;
  renderer: Renderer;
  spelling: TokenSpelling;
  /** The model name responses carry. */
  model: () => string;
  /** The multi-LoRA addon the request generates with (undefined: the base). */
  adapter?: string | undefined;
  contextLength: number;
  pickReplica: (key: string | undefined, i: number) => UpstreamReplica;
  /** Requests this deployment is serving now (perf_metrics' num-concurrent-requests). */
  serving: { count: number };
}

interface Choice {
  index: number;
  prompt: number;
  tokens: number[];
  logprobs: number[];
  samplingLogprobs: number[];
  top: Alt[][];
  text: string;
  finishReason: 'stop' | 'length' | 'tool_calls';
  /** A stop string (not a stop token) ended it. */
  stopString: boolean;
  snapshot: string | null;
  promptLogprobs: (number | null)[] | null;
  promptTop: (Alt[] | null)[] | null;
  cachedTokens: number;
  prefillQueueMs: number;
  prefillMs: number;
  decodeMs: number;
  firstTokenMs: number | null;
  replicaId: string;
}

/** Longest suffix of `text` that is a proper prefix of a stop string (held back while streaming). */
export function heldBack(text: string, stops: readonly string[]): number {
  let hold = 0;
  for (const s of stops)
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--)
      if (text.endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
  return hold;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

export async function serveInference(
  deps: InferenceDeps,
  r: InferenceRequest,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const arrived = performance.now();
  const concurrent = ++deps.serving.count;
  try {
    await serve(deps, r, req, res, arrived, concurrent);
  } finally {
    deps.serving.count--;
  }
}

async function serve(
  deps: InferenceDeps,
  r: InferenceRequest,
  req: IncomingMessage,
  res: ServerResponse,
  arrived: number,
  concurrent: number,
): Promise<void> {
  const tok = deps.tokenizer;
  const sp = deps.spelling;
  const chat = r.chat;
  const affinity =
    header(req, 'x-session-affinity') ?? header(req, 'x-multi-turn-session-id') ?? r.affinityKey;
  const sessionId = header(req, 'x-multi-turn-session-id') ?? affinity;
  const drain = header(req, 'x-fireworks-hot-load-drain-timeout');
  const drainS = drain !== undefined ? Number(drain) : undefined;
  if (drainS !== undefined && !(drainS > 0))
    throw new GatewayError(
      400,
      'invalid_argument',
      'x-fireworks-hot-load-drain-timeout must be a positive number of seconds',
    );
  const stopTokens = r.ignoreEos ? [] : chat ? [...deps.renderer.stopTokens] : [tok.eosId];
  // max_tokens 0 (echo only): the replica generates one token nobody sees
  const scoreOnly = r.maxTokens === 0;
  const maxFor = (p: number[]) =>
    scoreOnly
      ? 1
      : (r.maxTokens ?? Math.max(1, Math.min(chat ? 256 : 16, deps.contextLength - p.length)));
  const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const model = deps.model();
  const object = chat ? 'chat.completion.chunk' : 'text_completion';
  const stops = r.stops;

  // one generation per choice; choice k is prompt floor(k / n), sample k % n
  const upstreams = r.prompts.flatMap((_p, pi) =>
    Array.from({ length: r.n }, (_, j) => {
      const k = pi * r.n + j;
      return { k, pi, up: new Upstream(deps.pickReplica(affinity, k)) };
    }),
  );
  let clientGone = false;
  // a client that goes away, at any point, stops every generation of its request
  res.on('close', () => {
    if (res.writableFinished) return;
    clientGone = true;
    for (const u of upstreams) u.up.stop();
  });

  const opened = await Promise.allSettled(
    upstreams.map(({ k, pi, up }) => {
      const prompt = r.prompts[pi]?.tokens as number[];
      return up.open({
        prompt,
        max_tokens: maxFor(prompt),
        temperature: r.temperature,
        top_p: r.topP,
        top_k: r.topK,
        seed: r.seed !== undefined ? r.seed + k : undefined,
        stop_tokens: stopTokens,
        top_logprobs: r.topLogprobs,
        echo: r.echo,
        session_id: sessionId,
        adapter: deps.adapter,
        drain_timeout_s: drainS,
        // events one by one only where they are used as they come: SSE, and stop strings
        // (the generation is cut where one appears); otherwise all at the end, which spares
        // the replica a socket write per token
        stream: r.stream || stops.length > 0,
      });
    }),
  );
  const failedOpen = opened.find((o) => o.status === 'rejected');
  const bad = upstreams.find((u, i) => opened[i]?.status === 'fulfilled' && !u.up.ok);
  if (failedOpen || bad || clientGone) {
    for (const u of upstreams) if (u !== bad) u.up.stop();
    if (clientGone) return;
    if (bad) {
      const e = await bad.up.error();
      const headers: Record<string, string> =
        bad.up.status === 425 ? { 'x-fireworks-hot-load-drain-timeout': String(drainS ?? 90) } : {};
      throw new GatewayError(
        bad.up.status,
        e.code ?? 'replica_error',
        e.message ?? 'replica error',
        headers,
        bad.up.status === 400 ? 'prompt' : null,
      );
    }
    const reason = (failedOpen as PromiseRejectedResult).reason as Error;
    throw new GatewayError(502, 'replica_error', `replica unreachable: ${reason.message}`);
  }

  const sse = r.stream;
  const send = (obj: Record<string, unknown>) => {
    if (clientGone) return;
    res.write(
      `data: ${JSON.stringify(r.includeUsage ? { ...obj, usage: obj.usage ?? null } : obj)}\n\n`,
    );
  };
  if (sse) {
    // set, not passed to writeHead, so that a failure later can see it is a stream
    res.setHeader('content-type', 'text/event-stream');
    res.setHeader('cache-control', 'no-cache');
    res.setHeader(
      'fireworks-prompt-tokens',
      String(r.prompts.reduce((a, p) => a + p.tokens.length, 0)),
    );
    res.setHeader('fireworks-num-concurrent-requests', String(concurrent));
    res.writeHead(200);
  }
  const legacy = r.logprobs === 'legacy';
  const content = r.logprobs === 'content';
  const chunk = (index: number, body: Record<string, unknown>, snapshot: string | null) => ({
    id,
    object,
    created,
    model,
    choices: [
      chat ? { index, ...body } : { index, text: '', logprobs: null, finish_reason: null, ...body },
    ],
    snapshot_identity: snapshot,
  });

  let failure: unknown = null;
  // each choice's last stream event (finish_reason), sent once every choice has ended
  const pending: { k: number; body: Record<string, unknown>; snapshot: string | null }[] = [];
  const toolCallsOf = new Map<Choice, ToolCallOut[] | null>();
  const choices = await Promise.all(
    upstreams.map(async ({ k, pi, up }): Promise<Choice> => {
      const promptTokens = r.prompts[pi]?.tokens as number[];
      const promptText = r.prompts[pi]?.text as string;
      const c: Choice = {
        index: k,
        prompt: pi,
        tokens: [],
        logprobs: [],
        samplingLogprobs: [],
        top: [],
        text: '',
        finishReason: 'length',
        stopString: false,
        snapshot: null,
        promptLogprobs: null,
        promptTop: null,
        cachedTokens: 0,
        prefillQueueMs: 0,
        prefillMs: 0,
        decodeMs: 0,
        firstTokenMs: null,
        replicaId: up.replica.id,
      };
      // characters of the choice's text already streamed (echo: the prompt's count too)
      let emitted = 0;
      let offsetBase = 0; // legacy text_offset of the next streamed token
      let first = true;
      let stopped = false;
      // with tools the text is parsed at the end, so it is not streamed piece by piece
      const holdAll = r.parseTools;
      const visible = () => c.tokens.filter((t) => !stopTokens.includes(t) && t < tok.vocabSize);
      const onEvent = (e: GenerateEvent) => {
        if (stopped) return;
        if (e.type === 'prompt') {
          c.promptLogprobs = e.promptLogprobs;
          c.promptTop = e.promptTop ?? null;
          c.cachedTokens = e.cachedTokens;
          c.prefillQueueMs = e.prefillQueueMs;
          c.prefillMs = e.prefillMs;
          c.snapshot = e.snapshot;
          if (sse && r.echo) {
            // the prompt goes out first, with its logprobs
            const lp = echoLogprobs(sp, r, promptTokens, c);
            send(chunk(k, { text: promptText, logprobs: lp }, c.snapshot));
            offsetBase = [...promptText].length;
          }
          if (scoreOnly) {
            stopped = true;
            up.stop();
          }
          return;
        }
        if (e.type === 'done') {
          c.finishReason = e.finishReason;
          c.decodeMs = e.decodeMs;
          c.snapshot = e.snapshot;
          return;
        }
        c.firstTokenMs ??= performance.now() - arrived;
        c.tokens.push(e.token);
        c.logprobs.push(e.logprob);
        c.samplingLogprobs.push(e.samplingLogprob);
        c.top.push(e.top);
        c.snapshot = e.snapshot;
        let text = tok.decode(visible());
        let hold = 0;
        for (const s of stops) {
          const at = text.indexOf(s);
          if (at >= 0) {
            text = text.slice(0, at);
            stopped = true;
            c.stopString = true;
            c.finishReason = 'stop';
          }
        }
        if (!stopped) {
          hold = heldBack(text, stops);
          // an incomplete UTF-8 character waits for its last byte
          while (text.length - hold > emitted && text[text.length - hold - 1] === '\uFFFD') hold++;
        }
        c.text = text;
        if (stopped) up.stop();
        if (!sse) return;
        const upto = holdAll ? emitted : text.length - hold;
        const piece = text.slice(emitted, upto);
        emitted = Math.max(emitted, upto);
        let lp: unknown = null;
        if (legacy) {
          lp = legacyLogprobs(sp, [e.token], [e.logprob], [e.top], offsetBase);
          offsetBase += sp.chars(e.token);
        } else if (content)
          lp = { content: [sp.contentEntry(e.token, e.logprob, e.top, e.samplingLogprob)] };
        if (holdAll && !lp) return;
        const delta: Record<string, unknown> = holdAll ? {} : { content: piece };
        if (chat && first) delta.role = 'assistant';
        first = false;
        send(
          chunk(
            k,
            chat
              ? { delta, logprobs: lp, finish_reason: null, token_ids: [e.token] }
              : { text: piece, logprobs: lp, token_ids: [e.token] },
            c.snapshot,
          ),
        );
      };
      try {
        await up.read(onEvent);
      } catch (err) {
        failure ??= err;
        for (const u of upstreams) u.up.stop();
      }
      if (clientGone || failure) return c;
      let toolCalls: ToolCallOut[] | null = null;
      if (r.parseTools && !c.stopString) {
        const parsed = parseToolCalls(deps.renderer, c.tokens);
        if (parsed) {
          toolCalls = parsed.toolCalls;
          c.text = parsed.content;
          c.finishReason = 'tool_calls';
        }
      }
      toolCallsOf.set(c, toolCalls);
      if (sse) {
        if (emitted < c.text.length || toolCalls || (chat && first)) {
          const rest = c.text.slice(emitted);
          const delta: Record<string, unknown> = { content: rest };
          if (chat && first) delta.role = 'assistant';
          if (toolCalls) {
            delta.content = c.text.length > 0 ? c.text : null;
            delta.tool_calls = toolCalls.map((t, index) => ({ index, ...t }));
          }
          first = false;
          send(
            chunk(
              k,
              chat ? { delta, logprobs: null, finish_reason: null } : { text: rest },
              c.snapshot,
            ),
          );
          emitted = c.text.length;
        }
        const fin: Record<string, unknown> = chat
          ? { delta: {}, logprobs: null, finish_reason: c.finishReason }
          : { finish_reason: c.finishReason };
        if (r.rawOutput) fin.raw_output = rawOutput(c, promptTokens, r.echo);
        pending.push({ k, body: fin, snapshot: c.snapshot });
      }
      return c;
    }),
  );
  if (clientGone) return;
  if (failure) {
    const err = failure as Error;
    throw new GatewayError(502, 'replica_error', `replica stream failed: ${err.message}`);
  }
  if (scoreOnly) for (const c of choices) c.finishReason = 'length';

  const promptTokens = r.prompts.reduce((a, p) => a + p.tokens.length, 0);
  const completionTokens = scoreOnly ? 0 : choices.reduce((a, c) => a + c.tokens.length, 0);
  const cached = r.prompts.reduce(
    (a, _, pi) =>
      a + Math.max(0, ...choices.filter((c) => c.prompt === pi).map((c) => c.cachedTokens)),
    0,
  );
  const usage = {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: cached },
  };
  const timing = {
    prefill_queue_duration: Math.max(...choices.map((c) => c.prefillQueueMs)) / 1000,
    prefill_duration: Math.max(...choices.map((c) => c.prefillMs)) / 1000,
    decode_duration: Math.max(...choices.map((c) => c.decodeMs)) / 1000,
  };
  const firsts = choices.map((c) => c.firstTokenMs).filter((x): x is number => x !== null);
  const perf: Record<string, number> = {
    'prefill-queue-duration': timing.prefill_queue_duration,
    'prefill-duration': timing.prefill_duration,
    'generation-duration': timing.decode_duration,
    'server-time-to-first-token': firsts.length > 0 ? Math.min(...firsts) / 1000 : 0,
    'server-processing-time': (performance.now() - arrived) / 1000,
    'num-concurrent-requests': concurrent,
    'prompt-tokens': promptTokens,
    'cached-prompt-tokens': cached,
  };
  const snapshot = choices[0]?.snapshot ?? null;

  if (sse) {
    pending.sort((a, b) => a.k - b.k);
    pending.forEach((p, i) => {
      const last = i === pending.length - 1 && !r.includeUsage;
      send({
        ...chunk(p.k, p.body, p.snapshot),
        ...(last && r.perfMetrics ? { perf_metrics: perf } : {}),
      });
    });
    if (r.includeUsage)
      send({
        id,
        object,
        created,
        model,
        choices: [],
        usage,
        ...(r.perfMetrics ? { perf_metrics: perf } : {}),
        server_timing: timing,
        snapshot_identity: snapshot,
      });
    res.end('data: [DONE]\n\n');
    return;
  }

  const body: Record<string, unknown> = {
    id,
    object: chat ? 'chat.completion' : 'text_completion',
    created,
    model,
    choices: choices.map((c) =>
      chat
        ? chatChoice(sp, c, content, toolCallsOf.get(c) ?? null)
        : textChoice(
            sp,
            r,
            c,
            r.prompts[c.prompt] as { tokens: number[]; text: string },
            scoreOnly,
          ),
    ),
    usage,
    // extensions: the prompt as tokens, timing, the snapshot served, the replicas
    prompt_token_ids: r.prompts[0]?.tokens,
    server_timing: timing,
    snapshot_identity: snapshot,
    replicas: choices.map((c) => c.replicaId),
    ...(r.perfMetrics ? { perf_metrics: perf } : {}),
  };
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'server-timing': `prefill-queue;dur=${(timing.prefill_queue_duration * 1000).toFixed(3)}, prefill;dur=${(timing.prefill_duration * 1000).toFixed(3)}, decode;dur=${(timing.decode_duration * 1000).toFixed(3)}`,
  };
  for (const [key, v] of Object.entries(perf)) headers[`fireworks-${key}`] = String(v);
  if (snapshot) headers['x-snapshot-identity'] = snapshot;
  res.writeHead(200, headers);
  res.end(JSON.stringify(body));
}

/**
 * Logprobs of an echoed prompt. Nothing predicts the first token: OpenAI's legacy format says
 * null there. The `content` format (Fireworks) has a number in every entry, and its SDK drops
 * the first one of a full echo as "the unconditional first-token logprob" (it refuses a null,
 * which would lose every logprob of the answer): there it is 0, a filler never used.
 * Prompt tokens were not sampled, so their sampling_logprob is null.
 */
function echoLogprobs(
  sp: TokenSpelling,
  r: InferenceRequest,
  prompt: number[],
  c: Choice,
): unknown {
  const vals = c.promptLogprobs ?? prompt.map(() => null);
  const tops = c.promptTop ?? prompt.map(() => null);
  if (r.logprobs === 'legacy') return legacyLogprobs(sp, prompt, vals, tops);
  if (r.logprobs === 'content')
    return {
      content: prompt.map((t, i) =>
        sp.contentEntry(t, i === 0 ? 0 : (vals[i] ?? null), tops[i] ?? [], null),
      ),
    };
  return null;
}

function rawOutput(c: Choice, prompt: number[], echo: boolean): Record<string, unknown> {
  return {
    prompt_token_ids: prompt,
    completion: c.text,
    // with echo the SDK expects the prompt's ids first (its logprobs cover them too)
    completion_token_ids: echo ? [...prompt, ...c.tokens] : c.tokens,
  };
}

function textChoice(
  sp: TokenSpelling,
  r: InferenceRequest,
  c: Choice,
  prompt: { tokens: number[]; text: string },
  scoreOnly: boolean,
): Record<string, unknown> {
  const gen = scoreOnly ? [] : c.tokens;
  const text = r.echo ? prompt.text + (scoreOnly ? '' : c.text) : c.text;
  let logprobs: unknown = null;
  if (r.logprobs === 'legacy') {
    const toks = r.echo ? [...prompt.tokens, ...gen] : gen;
    const vals = r.echo
      ? [...(c.promptLogprobs ?? prompt.tokens.map(() => null)), ...c.logprobs.slice(0, gen.length)]
      : c.logprobs;
    const tops = r.echo
      ? [...(c.promptTop ?? prompt.tokens.map(() => null)), ...c.top.slice(0, gen.length)]
      : c.top;
    logprobs = legacyLogprobs(sp, toks, vals, tops);
  } else if (r.logprobs === 'content') {
    const entries = gen.map((t, i) =>
      sp.contentEntry(t, c.logprobs[i] as number, c.top[i] ?? [], c.samplingLogprobs[i]),
    );
    const echoed = r.echo
      ? ((echoLogprobs(sp, r, prompt.tokens, c) as { content: unknown[] }).content ?? [])
      : [];
    logprobs = { content: [...echoed, ...entries] };
  }
  return {
    index: c.index,
    text,
    logprobs,
    finish_reason: c.finishReason === 'tool_calls' ? 'stop' : c.finishReason,
    // extensions
    token_ids: gen,
    raw_output: rawOutput({ ...c, tokens: gen }, prompt.tokens, r.echo),
    snapshot_identity: c.snapshot,
    ...(r.prompts.length > 1 ? { prompt_token_ids: prompt.tokens } : {}),
  };
}

function chatChoice(
  sp: TokenSpelling,
  c: Choice,
  logprobs: boolean,
  toolCalls: ToolCallOut[] | null,
): Record<string, unknown> {
  return {
    index: c.index,
    message: {
      role: 'assistant',
      content: toolCalls && c.text.length === 0 ? null : c.text,
      refusal: null,
      ...(toolCalls ? { tool_calls: toolCalls } : {}),
    },
    logprobs: logprobs
      ? {
          content: c.tokens.map((t, i) =>
            sp.contentEntry(t, c.logprobs[i] as number, c.top[i] ?? [], c.samplingLogprobs[i]),
          ),
          refusal: null,
        }
      : null,
    finish_reason: c.finishReason,
    // extensions
    token_ids: c.tokens,
    snapshot_identity: c.snapshot,
  };
}

// OpenAI request bodies (completions and chat completions) as the gateway serves them: one zod
// schema each, then one normalised InferenceRequest. Fields a client may send that the gateway
// has no use for are ignored; parameters it knows but cannot honour get a 400 naming them.
import { z } from 'zod';
import type { MessageInput, Renderer, Tokenizer, ToolSpecInput } from '../../tokenizers/index.js';
import { invalid, unsupported } from './errors.js';

const stopSchema = z
  .union([z.string(), z.array(z.string()).max(16)])
  .nullable()
  .optional();
const tokenIds = z.array(z.number().int().nonnegative());

const commonSchema = {
  model: z.string().optional(),
  max_tokens: z.number().int().min(0).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  /** Fireworks/vLLM extension: 0 keeps every token. */
  top_k: z.number().int().min(0).nullable().optional(),
  n: z.number().int().min(1).max(128).nullable().optional(),
  seed: z.number().int().nonnegative().nullable().optional(),
  stop: stopSchema,
  stream: z.boolean().nullable().optional(),
  stream_options: z
    .object({ include_usage: z.boolean().nullable().optional() })
    .nullable()
    .optional(),
  user: z.string().optional(),
  presence_penalty: z.number().min(-2).max(2).nullable().optional(),
  frequency_penalty: z.number().min(-2).max(2).nullable().optional(),
  logit_bias: z.record(z.string(), z.number()).nullable().optional(),
  top_logprobs: z.number().int().min(0).max(20).nullable().optional(),
  /** Keep sampling past the end-of-text token (benchmarks, long streams). */
  ignore_eos: z.boolean().optional(),
  /** Fireworks: `raw_output` on every choice (the SDK's completion_token_ids). */
  raw_output: z.boolean().optional(),
  /** Fireworks: timing metrics in the response body / final stream event. */
  perf_metrics_in_response: z.boolean().optional(),
  /** Requests with the same key go to the same replica (its prefix cache). */
  prompt_cache_key: z.string().optional(),
};

export const completionsBodySchema = z.object({
  ...commonSchema,
  prompt: z.union([
    z.string(),
    z.array(z.string()).min(1),
    tokenIds.min(1),
    z.array(tokenIds.min(1)).min(1),
  ]),
  suffix: z.string().nullable().optional(),
  best_of: z.number().int().min(1).nullable().optional(),
  echo: z.boolean().nullable().optional(),
  /** An integer: OpenAI's legacy logprobs (with that many alternatives); true: per-token `content`. */
  logprobs: z
    .union([z.boolean(), z.number().int().min(0).max(20)])
    .nullable()
    .optional(),
});

const textPart = z.object({ type: z.literal('text'), text: z.string() });
const contentSchema = z.union([z.string(), z.array(z.looseObject({ type: z.string() }))]);
export const chatBodySchema = z.object({
  ...commonSchema,
  messages: z
    .array(
      z.looseObject({
        role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
        content: contentSchema.nullable().optional(),
      }),
    )
    .min(1),
  max_completion_tokens: z.number().int().min(1).nullable().optional(),
  logprobs: z.boolean().nullable().optional(),
  tools: z
    .array(
      z.looseObject({
        type: z.literal('function'),
        function: z.looseObject({ name: z.string().min(1) }),
      }),
    )
    .nullable()
    .optional(),
  tool_choice: z
    .union([z.enum(['auto', 'none', 'required']), z.looseObject({ type: z.string() })])
    .nullable()
    .optional(),
  parallel_tool_calls: z.boolean().nullable().optional(),
  response_format: z.looseObject({ type: z.string() }).nullable().optional(),
  functions: z.array(z.unknown()).nullable().optional(),
  function_call: z.unknown().optional(),
  modalities: z.array(z.string()).nullable().optional(),
  audio: z.unknown().optional(),
  prediction: z.unknown().optional(),
  /** Extension (as completions): the prompt's messages echoed with logprobs is not served. */
  echo: z.boolean().nullable().optional(),
});

export type LogprobsFormat = 'none' | 'legacy' | 'content';

/** One request, whatever endpoint it came by. */
export interface InferenceRequest {
  chat: boolean;
  /** One or more prompts (completions may batch them); each gets `n` choices. */
  prompts: { tokens: number[]; text: string }[];
  n: number;
  /** As given (undefined: the endpoint's default, bounded by the context). 0: echo only. */
  maxTokens: number | undefined;
  temperature: number;
  topP: number;
  topK: number;
  seed: number | undefined;
  stops: string[];
  ignoreEos: boolean;
  stream: boolean;
  includeUsage: boolean;
  logprobs: LogprobsFormat;
  topLogprobs: number;
  echo: boolean;
  rawOutput: boolean;
  perfMetrics: boolean;
  affinityKey: string | undefined;
  /** Chat with tools: tool calls in the output are parsed into `tool_calls`. */
  parseTools: boolean;
}

function zodError(err: z.ZodError): never {
  const issue = err.issues[0];
  const param = issue && issue.path.length > 0 ? String(issue.path[0]) : null;
  throw invalid(
    param,
    err.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; '),
  );
}

type Common = z.infer<z.ZodObject<typeof commonSchema>>;

/** The parameters both endpoints share, with the ones the gateway cannot honour refused. */
function common(
  b: Common,
): Omit<
  InferenceRequest,
  'chat' | 'prompts' | 'maxTokens' | 'echo' | 'logprobs' | 'topLogprobs' | 'parseTools'
> {
  if (b.presence_penalty) unsupportedParam('presence_penalty');
  if (b.frequency_penalty) unsupportedParam('frequency_penalty');
  if (b.logit_bias && Object.keys(b.logit_bias).length > 0) unsupportedParam('logit_bias');
  const stops = b.stop == null ? [] : typeof b.stop === 'string' ? [b.stop] : b.stop;
  if (stops.some((s) => s.length === 0))
    throw invalid('stop', 'stop: empty stop strings are not allowed');
  return {
    n: b.n ?? 1,
    temperature: b.temperature ?? 1,
    topP: b.top_p ?? 1,
    topK: b.top_k ?? 0,
    seed: b.seed ?? undefined,
    stops,
    ignoreEos: b.ignore_eos ?? false,
    stream: b.stream ?? false,
    includeUsage: b.stream_options?.include_usage === true,
    rawOutput: b.raw_output ?? false,
    perfMetrics: b.perf_metrics_in_response ?? false,
    affinityKey: b.prompt_cache_key ?? b.user,
  };
}

function unsupportedParam(param: string): never {
  throw unsupported(param, `${param} is not supported by this deployment (leave it unset or 0)`);
}

export function parseCompletions(raw: unknown, tok: Tokenizer, vocab: number): InferenceRequest {
  const p = completionsBodySchema.safeParse(raw);
  if (!p.success) zodError(p.error);
  const b = p.data;
  const base = common(b);
  if (b.suffix) throw unsupported('suffix', 'suffix (text insertion) is not supported');
  if (b.best_of != null && b.best_of !== base.n)
    throw unsupported('best_of', 'best_of is not supported (leave it unset or equal to n)');
  if (b.stream_options && !base.stream)
    throw invalid('stream_options', 'stream_options is only allowed with stream: true');
  const echo = b.echo ?? false;
  if (b.max_tokens === 0 && !echo)
    throw invalid('max_tokens', 'max_tokens: must be at least 1 (0 is allowed with echo: true)');
  const lp = b.logprobs;
  const logprobs: LogprobsFormat =
    typeof lp === 'number' ? 'legacy' : lp === true ? 'content' : 'none';
  const topLogprobs =
    typeof lp === 'number' ? lp : logprobs === 'content' ? (b.top_logprobs ?? 0) : 0;
  const raws = b.prompt;
  const list: (string | number[])[] =
    typeof raws === 'string'
      ? [raws]
      : typeof raws[0] === 'number'
        ? [raws as number[]]
        : (raws as (string | number[])[]);
  const prompts = list.map((one, i) => {
    if (typeof one === 'string') {
      if (one.length === 0) throw invalid('prompt', 'prompt: must not be empty');
      return { tokens: tok.encode(one), text: one };
    }
    const bad = one.find((t) => t >= vocab);
    if (bad !== undefined)
      throw invalid(
        'prompt',
        `prompt${list.length > 1 ? `[${i}]` : ''}: token ${bad} is outside the vocabulary [0, ${vocab})`,
      );
    return { tokens: one, text: tok.decode(one.filter((t) => t < tok.vocabSize)) };
  });
  return {
    ...base,
    chat: false,
    prompts,
    maxTokens: b.max_tokens ?? undefined,
    echo,
    logprobs,
    topLogprobs,
    parseTools: false,
  };
}

export function parseChat(raw: unknown, renderer: Renderer): InferenceRequest {
  const p = chatBodySchema.safeParse(raw);
  if (!p.success) zodError(p.error);
  const b = p.data;
  const base = common(b);
  if (b.stream_options && !base.stream)
    throw invalid('stream_options', 'stream_options is only allowed with stream: true');
  if (b.echo) throw unsupported('echo', 'echo is not supported on chat completions');
  if (b.functions?.length || b.function_call !== undefined)
    throw unsupported('functions', 'functions / function_call are not supported: use tools');
  if (b.modalities?.some((m) => m !== 'text'))
    throw unsupported('modalities', 'only the text modality is supported');
  if (b.audio != null) throw unsupported('audio', 'audio output is not supported');
  if (b.prediction != null) throw unsupported('prediction', 'predicted outputs are not supported');
  if (b.response_format && b.response_format.type !== 'text')
    throw unsupported(
      'response_format',
      `response_format ${b.response_format.type} is not supported (no constrained decoding): only {"type": "text"}`,
    );
  const choice = b.tool_choice ?? 'auto';
  if (choice !== 'auto' && choice !== 'none')
    throw unsupported(
      'tool_choice',
      'tool_choice: only "auto" and "none" are supported (no constrained decoding)',
    );
  if (b.top_logprobs != null && b.top_logprobs > 0 && b.logprobs !== true)
    throw invalid('top_logprobs', 'top_logprobs requires logprobs: true');
  const messages = b.messages.map((m, i): MessageInput => {
    if (Array.isArray(m.content)) {
      const parts = m.content.map((part) => {
        const t = textPart.safeParse(part);
        if (!t.success)
          throw unsupported(
            'messages',
            `messages[${i}].content: only text parts are supported (got type ${JSON.stringify(part.type)})`,
          );
        return t.data;
      });
      return {
        ...m,
        role: m.role === 'developer' ? 'system' : m.role,
        content: parts,
      } as MessageInput;
    }
    return { ...m, role: m.role === 'developer' ? 'system' : m.role } as MessageInput;
  });
  const tools = (b.tools ?? []) as unknown as ToolSpecInput[];
  let tokens: number[];
  try {
    tokens = renderer.renderGenerationPrompt(messages, tools.length > 0 ? { tools } : undefined);
  } catch (err) {
    throw invalid('messages', (err as Error).message);
  }
  const maxTokens = b.max_completion_tokens ?? b.max_tokens ?? undefined;
  if (maxTokens === 0) throw invalid('max_tokens', 'max_tokens: must be at least 1');
  return {
    ...base,
    chat: true,
    prompts: [
      {
        tokens,
        text: renderer.tokenizer.decode(tokens.filter((t) => t < renderer.tokenizer.vocabSize)),
      },
    ],
    maxTokens,
    echo: false,
    logprobs: b.logprobs === true ? 'content' : 'none',
    topLogprobs: b.logprobs === true ? (b.top_logprobs ?? 0) : 0,
    parseTools: tools.length > 0 && choice === 'auto',
  };
}

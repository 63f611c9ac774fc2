/**
 * Conversations as renderers take them: OpenAI-style messages (system / user / assistant /
 * tool, assistant `tool_calls`, a `tools` list), validated with zod, normalised to one shape.
 */

import { z } from 'zod';
import { jsonPath, valueAtPath } from '../util/json-path.js';
import { TokenizerError } from './errors.js';

const weightSchema = z.union([z.literal(0), z.literal(1)], {
  error: 'weight must be 0 (not trained) or 1 (trained)',
});

const textPartSchema = z.object({ type: z.literal('text'), text: z.string() });
const contentSchema = z.union([z.string(), z.array(textPartSchema)], {
  error: 'content must be a string or an array of {type: "text", text} parts',
});

const argumentsSchema = z.union([z.string(), z.record(z.string(), z.unknown())], {
  error: 'arguments must be a JSON string or an object',
});

const toolCallSchema = z.union(
  [
    z.looseObject({
      id: z.string().optional(),
      type: z.literal('function').optional(),
      function: z.looseObject({ name: z.string().min(1), arguments: argumentsSchema }),
    }),
    // The bare form Qwen's template also accepts: {name, arguments}.
    z.looseObject({
      id: z.string().optional(),
      name: z.string().min(1),
      arguments: argumentsSchema,
    }),
  ],
  { error: 'a tool call must be {type: "function", function: {name, arguments}}' },
);

const systemSchema = z.looseObject({
  role: z.literal('system'),
  content: contentSchema,
  weight: weightSchema.optional(),
});
const userSchema = z.looseObject({
  role: z.literal('user'),
  content: contentSchema,
  weight: weightSchema.optional(),
});
const assistantSchema = z.looseObject({
  role: z.literal('assistant'),
  content: contentSchema.nullable().optional(),
  reasoning_content: z.string().nullable().optional(),
  tool_calls: z.array(toolCallSchema).nullable().optional(),
  weight: weightSchema.optional(),
});
const toolSchema = z.looseObject({
  role: z.literal('tool'),
  content: contentSchema,
  tool_call_id: z.string().optional(),
  name: z.string().optional(),
  weight: weightSchema.optional(),
});

export const messageSchema = z.discriminatedUnion('role', [
  systemSchema,
  userSchema,
  assistantSchema,
  toolSchema,
]);

export const messagesSchema = z.array(messageSchema);

export const toolSpecSchema = z.looseObject({
  type: z.literal('function'),
  function: z.looseObject({
    name: z.string().min(1),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
});

export const toolsSchema = z.array(toolSpecSchema);

/** A message as callers write it (OpenAI chat format plus an optional `weight`). */
export type MessageInput = z.input<typeof messageSchema>;
/** A tool as callers write it: `{type: "function", function: {name, description, parameters}}`. */
export type ToolSpecInput = z.input<typeof toolSpecSchema>;

export type Role = 'system' | 'user' | 'assistant' | 'tool';

/** JSON value of a tool call's arguments: the JSON text as given, or an object. */
export type ToolCallArguments = string | Readonly<Record<string, unknown>>;

export interface ToolCall {
  id?: string;
  name: string;
  arguments: ToolCallArguments;
}

/** A validated, normalised message. */
export interface ChatMessage {
  role: Role;
  /** Text content (text parts joined; an assistant's null content is ""). */
  content: string;
  /** 0: not trained; 1: trained. Undefined: the renderer's default (assistant 1, others 0). */
  weight?: 0 | 1;
  /** Assistant only. */
  toolCalls?: ToolCall[];
  /** Assistant only: reasoning given separately from content (Qwen3 `reasoning_content`). */
  reasoningContent?: string;
  /** Tool only. */
  toolCallId?: string;
  /** Tool only: the tool's name. */
  name?: string;
}

/** A validated tool: the caller's own object, unchanged (its key order is what gets rendered). */
export type ToolSpec = Readonly<Record<string, unknown>> & {
  readonly type: 'function';
  readonly function: { readonly name: string };
};

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? 'a string' : typeof value;
}

function zodToError(rootName: string, input: unknown, err: z.ZodError): TokenizerError {
  const lines = err.issues.slice(0, 5).map((issue) => {
    const where = jsonPath(rootName, issue.path);
    let msg = issue.message;
    if (issue.code === 'invalid_union' && issue.path.at(-1) === 'role') {
      msg = `role must be one of system, user, assistant, tool (got ${JSON.stringify(valueAtPath(input, issue.path))})`;
    } else if (issue.code === 'invalid_type') {
      const got = valueAtPath(input, issue.path);
      msg =
        got === undefined
          ? `is required (${issue.message})`
          : `${issue.message.replace(/^Invalid input: /, '')} (got ${describe(got)})`;
    }
    return `${where}: ${msg}`;
  });
  const more = err.issues.length > 5 ? ` (and ${err.issues.length - 5} more problems)` : '';
  return new TokenizerError('invalid_messages', `${lines.join('; ')}${more}`);
}

function joinContent(content: string | readonly { text: string }[] | null | undefined): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => p.text).join('');
}

/**
 * Validate and normalise messages. Throws TokenizerError('invalid_messages') naming the message
 * index and field of each problem, e.g. `messages[1].content: expected string (got number)`.
 */
export function validateMessages(input: unknown, rootName = 'messages'): ChatMessage[] {
  const parsed = messagesSchema.safeParse(input);
  if (!parsed.success) throw zodToError(rootName, input, parsed.error);
  const raw = input as readonly Record<string, unknown>[];
  return parsed.data.map((m, i): ChatMessage => {
    const out: ChatMessage = { role: m.role, content: joinContent(m.content) };
    if (m.weight !== undefined) out.weight = m.weight;
    if (m.role === 'assistant') {
      if (m.reasoning_content !== undefined && m.reasoning_content !== null) {
        out.reasoningContent = m.reasoning_content;
      }
      const rawCalls = raw[i]!.tool_calls as readonly Record<string, unknown>[] | null | undefined;
      if (m.tool_calls && m.tool_calls.length > 0 && rawCalls) {
        out.toolCalls = m.tool_calls.map((tc, j): ToolCall => {
          const rawCall = rawCalls[j]!;
          const fn = 'function' in tc ? (rawCall.function as Record<string, unknown>) : rawCall;
          const call: ToolCall = {
            name: fn.name as string,
            arguments: fn.arguments as ToolCallArguments,
          };
          if (tc.id !== undefined) call.id = tc.id;
          return call;
        });
      }
    } else if (m.role === 'tool') {
      if (m.tool_call_id !== undefined) out.toolCallId = m.tool_call_id;
      if (m.name !== undefined) out.name = m.name;
    }
    return out;
  });
}

/** Validate a tools list; returns the caller's objects unchanged. */
export function validateTools(input: unknown, rootName = 'tools'): ToolSpec[] {
  if (input === undefined || input === null) return [];
  const parsed = toolsSchema.safeParse(input);
  if (!parsed.success) throw zodToError(rootName, input, parsed.error);
  return [...(input as ToolSpec[])];
}

export const conversationSchema = z.looseObject({
  messages: messagesSchema,
  tools: toolsSchema.nullable().optional(),
});

/** A dataset line: `{messages, tools?}` (the OpenAI fine-tuning JSONL shape). */
export type ConversationInput = z.input<typeof conversationSchema>;

export interface Conversation {
  messages: ChatMessage[];
  tools: ToolSpec[];
}

/** Validate a `{messages, tools?}` record (e.g. one line of a chat JSONL data set). */
export function validateConversation(input: unknown): Conversation {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new TokenizerError(
      'invalid_messages',
      `a conversation must be an object {messages, tools?} (got ${describe(input)})`,
    );
  }
  const rec = input as Record<string, unknown>;
  return { messages: validateMessages(rec.messages), tools: validateTools(rec.tools) };
}

/**
 * JSON text exactly as Python's `json.dumps(x, ensure_ascii=False)` writes it (the `tojson`
 * of HF chat templates): `", "` and `": "` separators, keys in insertion order, non-ASCII
 * unescaped. Numbers are written as JavaScript prints them (JS cannot tell 1.0 from 1).
 */
export function pythonJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (Number.isNaN(value)) return 'NaN';
      if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
      return pythonFloatExponent(String(value));
    case 'bigint':
      return value.toString();
    case 'object': {
      const withJson = value as { toJSON?: () => unknown };
      if (typeof withJson.toJSON === 'function') return pythonJson(withJson.toJSON());
      if (Array.isArray(value)) return `[${value.map((v) => pythonJson(v)).join(', ')}]`;
      const entries = Object.entries(value as Record<string, unknown>).filter(
        ([, v]) => v !== undefined && typeof v !== 'function',
      );
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}: ${pythonJson(v)}`).join(', ')}}`;
    }
    default:
      return 'null';
  }
}

/** JS writes 1e-7 / 1e+21; Python writes 1e-07 / 1e+21 (two-digit exponent at least). */
function pythonFloatExponent(s: string): string {
  const m = /^(-?[\d.]+)e([+-])(\d)$/.exec(s);
  return m ? `${m[1]}e${m[2]}0${m[3]}` : s;
}

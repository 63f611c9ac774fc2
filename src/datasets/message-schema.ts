/**
 * Shapes shared by every dataset kind: a `messages` list in the OpenAI chat format and a
 * `tools` list. Checks run in message order and the first problem of a row is reported, with
 * its path (`messages[2].content`) and a code of its own, so users see exactly one clear
 * sentence per bad line. zod checks the shapes; the rules zod cannot say well (system only
 * first, content forms, images, an assistant needing content or tool calls) are written out.
 *
 * Roles: system, user, assistant and tool (chosen: the spec lists the first three, but
 * assistant `tool_calls` are allowed and the renderers render tool results, so a tool message
 * answering a call is accepted too).
 */

import { z } from 'zod';
import type { MessageInput, ToolSpecInput } from '../tokenizers/index.js';
import { jsonPath, valueAtPath } from '../util/json-path.js';
import { describeValue, RowIssue } from './errors.js';

export const ROLES = ['system', 'user', 'assistant', 'tool'] as const;

export interface MessageRules {
  /** The base model takes images (vision model). Default false: image parts are refused. */
  supportsImages?: boolean;
}

const weightSchema = z.union([z.literal(0), z.literal(1)]);

const toolCallSchema = z.looseObject({
  id: z.string().optional(),
  type: z.literal('function').optional(),
  function: z.looseObject({
    name: z.string().min(1),
    arguments: z.union([z.string(), z.record(z.string(), z.unknown())]),
  }),
});

// Content is checked by checkContent (its two forms give clearer messages checked by hand).
const plainMessageSchema = z.looseObject({
  role: z.enum(['system', 'user', 'tool']),
  content: z.unknown().optional(),
  weight: weightSchema.optional(),
  tool_call_id: z.string().optional(),
  name: z.string().optional(),
});

const assistantMessageSchema = z.looseObject({
  role: z.literal('assistant'),
  content: z.unknown().optional(),
  reasoning_content: z.string().nullable().optional(),
  tool_calls: z.array(toolCallSchema).nullable().optional(),
  weight: weightSchema.optional(),
});

const textPartSchema = z.looseObject({ type: z.literal('text'), text: z.string() });
const imagePartSchema = z.looseObject({
  type: z.literal('image_url'),
  image_url: z.looseObject({ url: z.string() }),
});

const toolSpecSchema = z.looseObject({
  type: z.literal('function'),
  function: z.looseObject({
    name: z.string().min(1),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
});

const DATA_URI = /^data:image\/(png|jpe?g);base64,[A-Za-z0-9+/=\r\n]+$/i;

/** The first zod issue as a RowIssue: missing fields, message weights, anything else. */
function zodIssue(root: string, input: unknown, error: z.ZodError): RowIssue {
  const issue = error.issues[0]!;
  const where = jsonPath(root, issue.path);
  const got = valueAtPath(input, issue.path);
  if (got === undefined) return new RowIssue('missing_field', `Missing required field '${where}'`);
  if (issue.path.length === 1 && issue.path[0] === 'weight') {
    return new RowIssue(
      'invalid_message_weight',
      `${where} must be 0 (not trained) or 1 (trained) (got ${describeValue(got)})`,
    );
  }
  const why = issue.message.replace(/^Invalid input: /, '');
  return new RowIssue('invalid_field', `${where}: ${why} (got ${describeValue(got)})`);
}

/** Parse with zod or throw the first issue as a RowIssue. */
export function parseShape<T extends z.ZodType>(
  schema: T,
  value: unknown,
  root: string,
): z.output<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw zodIssue(root, value, parsed.error);
  return parsed.data;
}

/** Checks content (a string or parts); returns the number of image parts. */
function checkContent(content: unknown, where: string, role: string, rules: MessageRules): number {
  if (typeof content === 'string') return 0;
  if (!Array.isArray(content)) {
    throw new RowIssue(
      'invalid_content',
      `${where} must be a string or a list of {"type": "text", "text": "..."} parts (got ${describeValue(content)})`,
    );
  }
  let images = 0;
  content.forEach((part: unknown, j) => {
    const at = `${where}[${j}]`;
    const type = valueAtPath(part, ['type']);
    if (type === 'image_url') {
      checkImagePart(part, at, role, rules);
      images++;
      return;
    }
    if (type !== 'text') {
      throw new RowIssue(
        'invalid_content',
        `${at} must be a {"type": "text", "text": "..."} part (got type ${describeValue(type)})`,
      );
    }
    parseShape(textPartSchema, part, at);
  });
  return images;
}

function checkImagePart(part: unknown, at: string, role: string, rules: MessageRules): void {
  if (!rules.supportsImages) {
    throw new RowIssue(
      'image_not_supported',
      `${at} is an image part, but the base model is text-only; use a vision base model or remove the image`,
    );
  }
  const image = parseShape(imagePartSchema, part, at);
  if (role !== 'user') {
    throw new RowIssue('invalid_image', `${at}: images are only allowed in user messages`);
  }
  if (!DATA_URI.test(image.image_url.url)) {
    throw new RowIssue(
      'invalid_image',
      `${at}.image_url.url must be a base64 data URI (data:image/png;base64,... or data:image/jpeg;base64,...); HTTP(S) URLs and other formats are not supported`,
    );
  }
}

function checkAssistant(m: unknown, where: string, rules: MessageRules): number {
  const msg = parseShape(assistantMessageSchema, m, where);
  const calls = msg.tool_calls ?? [];
  if ((msg.content === undefined || msg.content === null) && calls.length === 0) {
    throw new RowIssue(
      'missing_field',
      `Missing required field '${where}.content' (an assistant message needs content or tool_calls)`,
    );
  }
  calls.forEach((call, j) => {
    const args = call.function.arguments;
    if (typeof args !== 'string') return;
    try {
      JSON.parse(args);
    } catch (err) {
      throw new RowIssue(
        'invalid_field',
        `${where}.tool_calls[${j}].function.arguments is not valid JSON (${(err as Error).message})`,
      );
    }
  });
  if (msg.content === undefined || msg.content === null) return 0;
  return checkContent(msg.content, `${where}.content`, 'assistant', rules);
}

function checkPlain(m: Record<string, unknown>, where: string, rules: MessageRules): number {
  parseShape(plainMessageSchema, m, where);
  for (const key of ['reasoning_content', 'tool_calls'] as const) {
    if (m[key] !== undefined) {
      throw new RowIssue('invalid_field', `${where}.${key} is only allowed on assistant messages`);
    }
  }
  if (m.content === undefined) {
    throw new RowIssue('missing_field', `Missing required field '${where}.content'`);
  }
  return checkContent(m.content, `${where}.content`, String(m.role), rules);
}

/** Checks one message; returns its number of image parts. */
function checkMessage(m: unknown, where: string, index: number, rules: MessageRules): number {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) {
    throw new RowIssue('invalid_field', `${where} must be an object (got ${describeValue(m)})`);
  }
  const rec = m as Record<string, unknown>;
  if (rec.role === undefined) {
    throw new RowIssue('missing_field', `Missing required field '${where}.role'`);
  }
  if (!(ROLES as readonly unknown[]).includes(rec.role)) {
    throw new RowIssue(
      'invalid_role',
      `${where}.role must be one of ${ROLES.join(', ')} (got ${describeValue(rec.role)})`,
    );
  }
  if (rec.role === 'system' && index > 0) {
    throw new RowIssue(
      'system_not_first',
      `${where} is a system message; a system message is optional and may only be the first message`,
    );
  }
  return rec.role === 'assistant'
    ? checkAssistant(rec, where, rules)
    : checkPlain(rec, where, rules);
}

export interface CheckedMessages {
  /** The messages as given (validated; the renderers take this form). */
  messages: MessageInput[];
  imageParts: number;
}

/** Checks a `messages` field: a non-empty list of valid messages. */
export function checkMessages(value: unknown, where: string, rules: MessageRules): CheckedMessages {
  if (value === undefined) {
    throw new RowIssue('missing_field', `Missing required field '${where}'`);
  }
  if (!Array.isArray(value)) {
    throw new RowIssue(
      'invalid_field',
      `${where} must be a list of messages (got ${describeValue(value)})`,
    );
  }
  if (value.length === 0) throw new RowIssue('invalid_field', `${where} must not be empty`);
  let imageParts = 0;
  value.forEach((m: unknown, i) => {
    imageParts += checkMessage(m, `${where}[${i}]`, i, rules);
  });
  // Validated above to be a subset of what the renderers accept (images aside).
  return { messages: value as MessageInput[], imageParts };
}

/** Checks an optional `tools` field (null and absent both mean no tools). */
export function checkTools(value: unknown, where: string): ToolSpecInput[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) {
    throw new RowIssue(
      'invalid_field',
      `${where} must be a list of tools (got ${describeValue(value)})`,
    );
  }
  return parseShape(z.array(toolSpecSchema), value, where) as ToolSpecInput[];
}

/** Checks an optional root `weight`: any finite number (negative and 0 included). */
export function checkExampleWeight(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new RowIssue(
      'invalid_example_weight',
      `weight must be a number (a loss multiplier for the whole example; got ${describeValue(value)})`,
    );
  }
  return value;
}

/** Whether an assistant message carries a non-empty `reasoning_content`. */
export function hasReasoning(m: MessageInput): boolean {
  return (
    m.role === 'assistant' && typeof m.reasoning_content === 'string' && m.reasoning_content !== ''
  );
}

/**
 * The dashboard's only way to the platform: the public REST API, with the API key the user
 * signed in with (kept in sessionStorage: one account per tab, gone when the tab closes).
 * Response shapes are the server's own types where it exports them.
 */
import type { PreviewLine } from '../../src/control-plane/resources/dataset-preview.js';
import type { JobLogLine } from '../../src/control-plane/resources/job-logs.js';
import type { RolloutView } from '../../src/control-plane/resources/job-views.js';
import type { MetricColumns } from '../../src/control-plane/resources/metric-columns.js';
import type { MetricRow } from '../../src/store/index.js';

export type { JobLogLine, MetricColumns, MetricRow, PreviewLine, RolloutView };

export interface Session {
  key: string;
  account: string;
}

const SESSION = 'temper.session';

export function session(): Session | null {
  const raw = sessionStorage.getItem(SESSION);
  return raw ? (JSON.parse(raw) as Session) : null;
}

export function signOut(): void {
  sessionStorage.removeItem(SESSION);
}

export class ApiFailure extends Error {
  constructor(
    readonly httpStatus: number,
    message: string,
  ) {
    super(message);
  }
}

async function failure(res: Response): Promise<ApiFailure> {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: { message?: string } };
    if (body.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiFailure(res.status, message);
}

function headers(key: string, json: boolean): HeadersInit {
  return {
    authorization: `Bearer ${key}`,
    ...(json ? { 'content-type': 'application/json' } : {}),
  };
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const s = session();
  if (!s) throw new ApiFailure(401, 'not signed in');
  const res = await fetch(path, {
    method,
    headers: headers(s.key, body !== undefined),
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/**
 * A GET that index.html may have sent already, before this code loaded (the job page's
 * metrics): its response is taken once, for the same path and key, else the request is made.
 */
export async function earlyRead<T>(path: string): Promise<T> {
  const w = window as { temperEarlyRead?: { path: string; response: Promise<Response> } };
  const early = w.temperEarlyRead;
  w.temperEarlyRead = undefined;
  if (!early || early.path !== path) return request<T>('GET', path);
  const res = await early.response;
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

export async function requestText(path: string): Promise<string> {
  const s = session();
  if (!s) throw new ApiFailure(401, 'not signed in');
  const res = await fetch(path, { headers: headers(s.key, false) });
  if (!res.ok) throw await failure(res);
  return res.text();
}

/** Checks the key against GET /v1/accounts and keeps it for this tab. */
export async function signIn(key: string): Promise<Session> {
  const res = await fetch('/v1/accounts', { headers: headers(key, false) });
  if (!res.ok) throw await failure(res);
  const body = (await res.json()) as { accounts: { name: string }[] };
  const name = body.accounts[0]?.name ?? '';
  const s = { key, account: name.replace(/^accounts\//, '') };
  sessionStorage.setItem(SESSION, JSON.stringify(s));
  return s;
}

export const JOB_COLLECTIONS = {
  supervisedFineTuningJobs: 'SFT',
  dpoJobs: 'DPO',
  orpoJobs: 'ORPO',
  reinforcementFineTuningJobs: 'RFT',
  rlorTrainerJobs: 'Trainer',
} as const;
export type JobCollection = keyof typeof JOB_COLLECTIONS;

export interface JobProgress {
  step: number;
  totalSteps: number;
  percent: number;
  epoch?: number;
}

/** A job as the API renders it (every kind shares these; the rest is its settings). */
export interface Job {
  name: string;
  displayName?: string;
  state: string;
  status?: { code: string; message: string };
  jobProgress?: JobProgress;
  createTime: string;
  updateTime?: string;
  completedTime?: string;
  baseModel?: string;
  outputModel?: string;
  dataset?: string;
  [field: string]: unknown;
}

export interface Checkpoint {
  name: string;
  checkpointType: string;
  createTime: string;
  promotable?: boolean;
  [field: string]: unknown;
}

export interface Model {
  name: string;
  kind?: string;
  state?: string;
  createTime?: string;
  [field: string]: unknown;
}

export interface RenderSample {
  source_jsonl_line_number: number;
  renderer: string;
  token_ids: number[];
  decoded_tokens: string[];
  token_weights: number[];
}

export const jobPath = (name: string) => `/v1/${name}`;

export async function listAll<T>(account: string, collection: string): Promise<T[]> {
  const items: T[] = [];
  let token = '';
  do {
    const page = await request<Record<string, unknown>>(
      'GET',
      `/v1/accounts/${account}/${collection}?pageSize=200${token ? `&pageToken=${encodeURIComponent(token)}` : ''}`,
    );
    items.push(...((page[collection] as T[] | undefined) ?? []));
    token = String(page.nextPageToken ?? '');
  } while (token);
  return items;
}

export type JobEvent =
  | { event: 'state'; data: Job }
  | { event: 'metrics'; data: { metrics: MetricRow[] } }
  | { event: 'end'; data: { state: string } }
  | { event: 'error'; data: { message: string } };

export type LogEvent =
  | { event: 'log'; data: { lines: JobLogLine[] } }
  | { event: 'end'; data: { state: string } }
  | { event: 'error'; data: { message: string } };

/**
 * Reads a server-sent-events stream with fetch (EventSource cannot send the Authorization
 * header). Returns a function that stops it.
 */
function followSse<E extends { event: string; data: unknown }>(
  path: string,
  onEvent: (e: E) => void,
): () => void {
  const s = session();
  const abort = new AbortController();
  const fail = (message: string) => onEvent({ event: 'error', data: { message } } as E);
  void (async () => {
    if (!s) return;
    const res = await fetch(path, { headers: headers(s.key, false), signal: abort.signal });
    if (!res.ok || !res.body) {
      fail((await failure(res)).message);
      return;
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      // Look for the blank line only in what is new (a 10 MB event comes in many chunks).
      const from = Math.max(0, buffer.length - 1);
      buffer += value;
      let cut = buffer.indexOf('\n\n', from);
      while (cut >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        cut = buffer.indexOf('\n\n');
        let event = '';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (event && data) onEvent({ event, data: JSON.parse(data) } as E);
      }
    }
  })().catch((err: unknown) => {
    if (!abort.signal.aborted) fail((err as Error).message);
  });
  return () => abort.abort();
}

/** Follows `{job}/events`: state changes and new metric rows (those past `afterStep`). */
export const followJob = (
  name: string,
  afterStep: number | undefined,
  onEvent: (e: JobEvent) => void,
) =>
  followSse(
    `${jobPath(name)}/events${afterStep === undefined ? '' : `?afterStep=${afterStep}`}`,
    onEvent,
  );

/** Follows `{job}/logs?follow=true`: log lines as they appear (a line may come again, changed). */
export const followLogs = (name: string, onEvent: (e: LogEvent) => void) =>
  followSse(`${jobPath(name)}/logs?follow=true`, onEvent);

/** A multipart upload (dataset files): the API's message on failure. */
export async function upload<T>(path: string, file: Blob, filename: string): Promise<T> {
  const s = session();
  if (!s) throw new ApiFailure(401, 'not signed in');
  const form = new FormData();
  form.append('file', file, filename);
  const res = await fetch(path, { method: 'POST', headers: headers(s.key, false), body: form });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

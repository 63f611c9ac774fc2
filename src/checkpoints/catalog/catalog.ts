// The checkpoint catalog: the rows `list_checkpoints` returns, derived from what is in the
// object store (so a job's checkpoints stay listed after its trainer is gone, for as long as
// the blobs exist). Layout:
//
//   accounts/{account}/rlorTrainerJobs/{job}/checkpoints/{checkpoint}/...
//
// where each checkpoint folder holds a DCP checkpoint, a sampler export or an arc_v2 delta
// snapshot (detect.ts decides which). Rows are oldest first (createTime, then id), paged
// with pageSize (1-200, default 200) and an opaque pageToken.
import { z } from 'zod';
import { CheckpointError, validateCheckpointName } from '../dcp/errors.js';
import type { ObjectStore } from '../object-store/types.js';
import { type CheckpointType, type DetectedCheckpoint, detectCheckpoint } from './detect.js';

export const MAX_PAGE_SIZE = 200;

/** Resource ids: 1-63 of a-z0-9-, starting with a letter, not ending with '-'. */
export const RESOURCE_ID = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function validateResourceId(id: string, what: string): string {
  if (typeof id !== 'string' || !RESOURCE_ID.test(id))
    throw new CheckpointError(
      'invalid_name',
      `${what} '${String(id)}' is not a valid id: use 1-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'`,
    );
  return id;
}

export interface CheckpointName {
  account: string;
  job: string;
  checkpoint: string;
}

/** Parses `accounts/{a}/rlorTrainerJobs/{job}/checkpoints/{id}`, refusing anything else. */
export function parseCheckpointName(name: string): CheckpointName {
  const parts = typeof name === 'string' ? name.split('/') : [];
  if (
    parts.length !== 6 ||
    parts[0] !== 'accounts' ||
    parts[2] !== 'rlorTrainerJobs' ||
    parts[4] !== 'checkpoints'
  )
    throw new CheckpointError(
      'invalid_name',
      `checkpoint name '${String(name)}' must be accounts/{account}/rlorTrainerJobs/{job}/checkpoints/{checkpoint}`,
    );
  return {
    account: validateResourceId(parts[1]!, 'account'),
    job: validateResourceId(parts[3]!, 'trainer job'),
    checkpoint: validateCheckpointName(parts[5]!),
  };
}

export function formatCheckpointName(n: CheckpointName): string {
  return `accounts/${n.account}/rlorTrainerJobs/${n.job}/checkpoints/${n.checkpoint}`;
}

/** The store prefix (no trailing '/') that holds a job's checkpoints. */
export function checkpointsPrefix(account: string, job: string): string {
  return `accounts/${validateResourceId(account, 'account')}/rlorTrainerJobs/${validateResourceId(job, 'trainer job')}/checkpoints`;
}

/** The store prefix (no trailing '/') of one checkpoint. */
export function checkpointPrefix(n: CheckpointName): string {
  return `${checkpointsPrefix(n.account, n.job)}/${validateCheckpointName(n.checkpoint)}`;
}

export interface CheckpointRow {
  name: string;
  /** RFC3339. */
  createTime: string;
  updateTime: string;
  checkpointType: CheckpointType;
  promotable: boolean;
  /** A DCP train state is committed under the same name (an extension of the reference row). */
  resumable: boolean;
}

export interface ListCheckpointsOptions {
  /** 1-200; 0 or absent: 200; larger values are lowered to 200. */
  pageSize?: number;
  /** The nextPageToken of the previous page. */
  pageToken?: string;
}

export interface ListCheckpointsResult {
  checkpoints: CheckpointRow[];
  /** '' on the last page. */
  nextPageToken: string;
}

/** A detected checkpoint with where it lives. */
export interface CatalogEntry extends DetectedCheckpoint {
  name: CheckpointName;
  /** Store prefix of the checkpoint's folder. */
  prefix: string;
}

const tokenSchema = z.object({ p: z.string(), t: z.number(), i: z.string() });

function encodeToken(parent: string, e: CatalogEntry): string {
  return Buffer.from(
    JSON.stringify({ p: parent, t: e.createTime.getTime(), i: e.name.checkpoint }),
  ).toString('base64url');
}

function decodeToken(token: string, parent: string): z.infer<typeof tokenSchema> {
  let parsed: z.ZodSafeParseResult<z.infer<typeof tokenSchema>>;
  try {
    parsed = tokenSchema.safeParse(JSON.parse(Buffer.from(token, 'base64url').toString('utf8')));
  } catch {
    parsed = tokenSchema.safeParse(null);
  }
  if (!parsed.success || parsed.data.p !== parent)
    throw new CheckpointError(
      'invalid_argument',
      `pageToken is not one this listing returned for ${parent}: pass nextPageToken from the previous page unchanged, or omit it to start over`,
    );
  return parsed.data;
}

function compareEntries(a: { t: number; i: string }, b: { t: number; i: string }): number {
  return a.t - b.t || (a.i < b.i ? -1 : a.i > b.i ? 1 : 0);
}

export interface CheckpointCatalogOptions {
  now?: () => Date;
}

export class CheckpointCatalog {
  constructor(
    readonly store: ObjectStore,
    private readonly opts: CheckpointCatalogOptions = {},
  ) {}

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  /** Every committed, unexpired checkpoint of a job, oldest first. */
  async entries(account: string, job: string): Promise<CatalogEntry[]> {
    const root = `${checkpointsPrefix(account, job)}/`;
    const groups = new Map<string, { path: string; size: number; updated: Date }[]>();
    for (const o of await this.store.list(root)) {
      const rest = o.key.slice(root.length);
      const slash = rest.indexOf('/');
      if (slash <= 0) continue;
      const id = rest.slice(0, slash);
      let group = groups.get(id);
      if (!group) {
        group = [];
        groups.set(id, group);
      }
      group.push({ path: rest.slice(slash + 1), size: o.size, updated: o.updated });
    }
    const now = this.now();
    const out: CatalogEntry[] = [];
    for (const [id, objects] of groups) {
      let name: CheckpointName;
      try {
        name = { account, job, checkpoint: validateCheckpointName(id) };
      } catch {
        continue; // not a folder any writer of ours makes
      }
      const prefix = `${root}${id}`;
      const found = await detectCheckpoint(objects, (p) => this.store.get(`${prefix}/${p}`), now);
      if (found) out.push({ ...found, name, prefix });
    }
    return out.sort((a, b) =>
      compareEntries(
        { t: a.createTime.getTime(), i: a.name.checkpoint },
        { t: b.createTime.getTime(), i: b.name.checkpoint },
      ),
    );
  }

  /** One page of a job's checkpoints (parent: `accounts/{a}/rlorTrainerJobs/{job}`). */
  async list(parent: string, opts: ListCheckpointsOptions = {}): Promise<ListCheckpointsResult> {
    const parts = typeof parent === 'string' ? parent.split('/') : [];
    if (parts.length !== 4 || parts[0] !== 'accounts' || parts[2] !== 'rlorTrainerJobs')
      throw new CheckpointError(
        'invalid_name',
        `parent '${String(parent)}' must be accounts/{account}/rlorTrainerJobs/{job}`,
      );
    const account = validateResourceId(parts[1]!, 'account');
    const job = validateResourceId(parts[3]!, 'trainer job');
    const size = opts.pageSize ?? 0;
    if (!Number.isInteger(size) || size < 0)
      throw new CheckpointError(
        'invalid_argument',
        `pageSize must be a non-negative integer (got ${size})`,
      );
    const pageSize = size === 0 ? MAX_PAGE_SIZE : Math.min(size, MAX_PAGE_SIZE);
    const after = opts.pageToken ? decodeToken(opts.pageToken, parent) : null;
    const all = await this.entries(account, job);
    const rest = after
      ? all.filter(
          (e) => compareEntries({ t: e.createTime.getTime(), i: e.name.checkpoint }, after) > 0,
        )
      : all;
    const page = rest.slice(0, pageSize);
    const last = page[page.length - 1];
    return {
      checkpoints: page.map(toRow),
      nextPageToken: rest.length > pageSize && last ? encodeToken(parent, last) : '',
    };
  }

  /** Every row of a job, all pages. */
  async listAll(parent: string): Promise<CheckpointRow[]> {
    const rows: CheckpointRow[] = [];
    let pageToken = '';
    do {
      const page = await this.list(parent, { pageToken });
      rows.push(...page.checkpoints);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return rows;
  }

  /** The committed, unexpired checkpoint of that name (CheckpointError 'not_found' otherwise). */
  async get(name: string): Promise<CatalogEntry> {
    const n = parseCheckpointName(name);
    const prefix = checkpointPrefix(n);
    const objects = (await this.store.list(`${prefix}/`)).map((o) => ({
      path: o.key.slice(prefix.length + 1),
      size: o.size,
      updated: o.updated,
    }));
    const found = objects.length
      ? await detectCheckpoint(objects, (p) => this.store.get(`${prefix}/${p}`), this.now())
      : null;
    if (!found)
      throw new CheckpointError(
        'not_found',
        `checkpoint ${name} does not exist (never committed, expired, or deleted): list the job's checkpoints to see what is there`,
      );
    return { ...found, name: n, prefix };
  }
}

export function toRow(e: CatalogEntry): CheckpointRow {
  return {
    name: formatCheckpointName(e.name),
    createTime: e.createTime.toISOString(),
    updateTime: e.updateTime.toISOString(),
    checkpointType: e.checkpointType,
    promotable: e.promotable,
    resumable: e.resumable,
  };
}

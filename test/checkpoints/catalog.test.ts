// The checkpoint catalog: rows derived from the object store, types detected from the blobs,
// oldest first, paged; half-written and expired checkpoints are not listed.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointCatalog,
  checkpointPrefix,
  parseCheckpointName,
} from '../../src/checkpoints/catalog/index.js';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import type { ObjectStore } from '../../src/checkpoints/object-store/types.js';
import {
  ACCOUNT,
  at,
  hfFiles,
  JOB,
  nameOf,
  putDcp,
  putDelta,
  putExport,
  putHfExport,
  putPeftExport,
  ROOT,
} from './catalog.helpers.js';

const PARENT = `accounts/${ACCOUNT}/rlorTrainerJobs/${JOB}`;
let base: string;
let n = 0;
async function freshStore(): Promise<ObjectStore> {
  return openObjectStore(pathToFileURL(join(base, `s${n++}`)).href);
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'temper-catalog-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('checkpoint catalog', () => {
  it('lists every kind, detected from the blobs, oldest first', async () => {
    const store = await freshStore();
    // Written out of order; createTime decides.
    await putPeftExport(store, 'step-4-lora', { createTime: at(4) });
    await putHfExport(store, 'step-2-base', { createTime: at(2) });
    await putDcp(store, 'step-1-state', { now: at(1) });
    await putDcp(store, 'step-3-lora-state', { now: at(3), lora: true });
    await putDelta(store, 'step-5-delta', 'step-2-base', { now: at(5) });
    const rows = await new CheckpointCatalog(store, { now: () => at(10) }).listAll(PARENT);
    expect(rows.map((r) => [r.name, r.checkpointType, r.promotable])).toEqual([
      [nameOf('step-1-state'), 'TRAINING', false],
      [nameOf('step-2-base'), 'INFERENCE_BASE', true],
      [nameOf('step-3-lora-state'), 'TRAINING_LORA', false],
      [nameOf('step-4-lora'), 'INFERENCE_LORA', true],
      [nameOf('step-5-delta'), 'INFERENCE_ARC_V2', false],
    ]);
    for (const r of rows) {
      expect(r.createTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      expect(Date.parse(r.updateTime)).toBeGreaterThan(0);
    }
    expect(rows[0]!.createTime).toBe(at(1).toISOString());
  });

  it('detects from the files, not from what a writer claims', async () => {
    const store = await freshStore();
    await putDcp(store, 'claims-base', { now: at(1), claim: 'INFERENCE_BASE' });
    await putExport(store, 'claims-lora', hfFiles(), { kind: 'peft_lora', createTime: at(2) });
    await putExport(store, 'no-weights', { 'config.json': '{}' }, { createTime: at(3) });
    const rows = await new CheckpointCatalog(store).listAll(PARENT);
    expect(rows.map((r) => [r.name.split('/').pop(), r.checkpointType])).toEqual([
      ['claims-base', 'TRAINING'],
      ['claims-lora', 'INFERENCE_BASE'],
    ]);
  });

  it('a checkpoint saved resumable and promotable is one promotable row', async () => {
    const store = await freshStore();
    await putDcp(store, 'final', { now: at(1) });
    await putHfExport(store, 'final', { createTime: at(2) });
    const [row] = await new CheckpointCatalog(store).listAll(PARENT);
    expect(row).toMatchObject({
      checkpointType: 'INFERENCE_BASE',
      promotable: true,
      resumable: true,
      createTime: at(1).toISOString(),
    });
  });

  it('never lists a half-written checkpoint', async () => {
    const store = await freshStore();
    await putHfExport(store, 'complete', { createTime: at(1) });
    await putHfExport(store, 'no-manifest', { createTime: at(2), uncommitted: true });
    // A manifest that lists a file which is not (yet, or any more) there.
    await putHfExport(store, 'missing-file', { createTime: at(3) });
    await store.delete(`${ROOT}/missing-file/model.safetensors`);
    // A file shorter than the manifest says.
    await putHfExport(store, 'short-file', { createTime: at(4) });
    await store.put(`${ROOT}/short-file/config.json`, '{}');
    // Garbage for a manifest; DCP shard files without their metadata.json.
    await putHfExport(store, 'bad-manifest', { createTime: at(5), uncommitted: true });
    await store.put(
      `${ROOT}/bad-manifest/temper_export.json`,
      '{"format": "temper-export", "files": 3',
    );
    await putDcp(store, 'dcp-uncommitted', { now: at(6) });
    await store.delete(`${ROOT}/dcp-uncommitted/metadata.json`);
    const catalog = new CheckpointCatalog(store);
    expect((await catalog.listAll(PARENT)).map((r) => r.name)).toEqual([nameOf('complete')]);
    await expect(catalog.get(nameOf('no-manifest'))).rejects.toMatchObject({ code: 'not_found' });
  });

  it('honours TTLs', async () => {
    const store = await freshStore();
    await putHfExport(store, 'short-lived', { createTime: at(0), expireTime: at(30) });
    await putDcp(store, 'state', { now: at(0), ttlSeconds: 180 });
    await putHfExport(store, 'base', { createTime: at(1) });
    await putDelta(store, 'delta', 'base', { now: at(2), ttlSeconds: 60 });
    const list = (minute: number) =>
      new CheckpointCatalog(store, { now: () => at(minute) })
        .listAll(PARENT)
        .then((rows) => rows.map((r) => r.name.split('/').pop()));
    expect(await list(2)).toEqual(['short-lived', 'state', 'base', 'delta']);
    expect(await list(5)).toEqual(['short-lived', 'base']);
    expect(await list(31)).toEqual(['base']);
  });

  it('pages with pageSize and pageToken', async () => {
    const store = await freshStore();
    for (let i = 0; i < 5; i++)
      await putHfExport(store, `c${i}`, { createTime: at(i % 2 === 0 ? 1 : 2), shift: i });
    const catalog = new CheckpointCatalog(store);
    const all = (await catalog.list(PARENT)).checkpoints.map((r) => r.name.split('/').pop());
    expect(all).toEqual(['c0', 'c2', 'c4', 'c1', 'c3']); // createTime, then id
    const seen: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const page = await catalog.list(PARENT, { pageSize: 2, pageToken: token });
      seen.push(...page.checkpoints.map((r) => r.name.split('/').pop()!));
      token = page.nextPageToken;
      pages++;
    } while (token);
    expect(seen).toEqual(all);
    expect(pages).toBe(3);
    expect((await catalog.list(PARENT, { pageSize: 1000 })).checkpoints).toHaveLength(5);
    await expect(catalog.list(PARENT, { pageSize: -1 })).rejects.toMatchObject({
      code: 'invalid_argument',
    });
    await expect(catalog.list(PARENT, { pageToken: 'garbage' })).rejects.toMatchObject({
      code: 'invalid_argument',
    });
    const { nextPageToken } = await catalog.list(PARENT, { pageSize: 1 });
    await expect(
      catalog.list(`accounts/${ACCOUNT}/rlorTrainerJobs/other-job`, { pageToken: nextPageToken }),
    ).rejects.toThrow(/pageToken is not one this listing returned/);
  });

  it('keeps listing while the blobs exist: state lives only in the store', async () => {
    const store = await freshStore();
    await putHfExport(store, 'kept', { createTime: at(1) });
    const before = await new CheckpointCatalog(store).listAll(PARENT);
    const reopened = await openObjectStore(store.url);
    expect(await new CheckpointCatalog(reopened).listAll(PARENT)).toEqual(before);
    expect(
      await new CheckpointCatalog(reopened).listAll(
        `accounts/${ACCOUNT}/rlorTrainerJobs/never-ran`,
      ),
    ).toEqual([]);
  });

  it('refuses malformed names and path traversal', () => {
    expect(parseCheckpointName(nameOf('step-1'))).toEqual({
      account: ACCOUNT,
      job: JOB,
      checkpoint: 'step-1',
    });
    expect(checkpointPrefix({ account: ACCOUNT, job: JOB, checkpoint: 'x' })).toBe(`${ROOT}/x`);
    for (const bad of [
      `${PARENT}/checkpoints/..`,
      `${PARENT}/checkpoints/../../other/checkpoints/x`,
      `${PARENT}/checkpoints/a/b`,
      `accounts/../rlorTrainerJobs/${JOB}/checkpoints/x`,
      `accounts/${ACCOUNT}/models/${JOB}/checkpoints/x`,
      `/accounts/${ACCOUNT}/rlorTrainerJobs/${JOB}/checkpoints/x`,
      '',
    ])
      expect(() => parseCheckpointName(bad), bad).toThrow(
        /checkpoint name|not a valid id|not allowed/,
      );
  });
});

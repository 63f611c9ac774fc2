// Promotion of sampler checkpoints to models: validation first, refusal of what cannot be
// promoted, verified copies, and nothing left behind on failure.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import type { ObjectStore } from '../../src/checkpoints/object-store/types.js';
import {
  MODEL_FILE,
  promoteCheckpoint,
  readModel,
  validateOutputModelId,
} from '../../src/checkpoints/promotion.js';
import {
  ACCOUNT,
  allKeys,
  at,
  nameOf,
  putDcp,
  putDelta,
  putHfExport,
  putPeftExport,
  ROOT,
} from './catalog.helpers.js';

let base: string;
let n = 0;
async function freshStore(): Promise<ObjectStore> {
  return openObjectStore(pathToFileURL(join(base, `s${n++}`)).href);
}
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'temper-promotion-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const BASE_MODEL = 'accounts/temper/models/byte-lm-3m';

describe('promoteCheckpoint', () => {
  it('copies a base export into accounts/{a}/models/{id} and commits the model', async () => {
    const store = await freshStore();
    await putHfExport(store, 'final', { createTime: at(1), baseModel: BASE_MODEL });
    const model = await promoteCheckpoint(
      store,
      { name: nameOf('final'), outputModelId: 'my-model' },
      { now: () => at(9) },
    );
    expect(model).toMatchObject({
      name: `accounts/${ACCOUNT}/models/my-model`,
      state: 'READY',
      kind: 'HF_BASE_MODEL',
      peftDetails: null,
      baseModel: BASE_MODEL,
      sourceCheckpoint: nameOf('final'),
      createTime: at(9).toISOString(),
    });
    for (const f of ['config.json', 'model.safetensors', 'temper_export.json'])
      expect(
        (await store.get(`accounts/${ACCOUNT}/models/my-model/${f}`)).equals(
          await store.get(`${ROOT}/final/${f}`),
        ),
      ).toBe(true);
    expect(await readModel(store, ACCOUNT, 'my-model')).toEqual(model);
    // The checkpoint is still there, and the same id cannot be promoted to twice.
    await expect(
      promoteCheckpoint(store, { name: nameOf('final'), outputModelId: 'my-model' }),
    ).rejects.toMatchObject({
      code: 'already_exists',
    });
  });

  it('promotes a LoRA adapter as an HF_PEFT_ADDON with its PEFT details', async () => {
    const store = await freshStore();
    await putPeftExport(store, 'lora-final', { createTime: at(1) });
    await expect(
      promoteCheckpoint(store, { name: nameOf('lora-final'), outputModelId: 'addon' }),
    ).rejects.toThrow(/LoRA adapter and records no base model: pass baseModel/);
    expect(await store.list(`accounts/${ACCOUNT}/models/`)).toEqual([]);
    const model = await promoteCheckpoint(store, {
      name: nameOf('lora-final'),
      outputModelId: 'addon',
      baseModel: BASE_MODEL,
    });
    expect(model).toMatchObject({
      kind: 'HF_PEFT_ADDON',
      baseModel: BASE_MODEL,
      peftDetails: {
        baseModel: BASE_MODEL,
        r: 4,
        loraAlpha: 8,
        targetModules: ['q_proj', 'v_proj'],
      },
    });
    expect(
      await store.stat(`accounts/${ACCOUNT}/models/addon/adapter_model.safetensors`),
    ).not.toBeNull();
  });

  it('validates outputModelId before touching anything', async () => {
    const store = await freshStore();
    await putHfExport(store, 'final', { createTime: at(1) });
    const before = await allKeys(store);
    for (const bad of [
      '',
      'My-Model',
      '1model',
      '-model',
      'model-',
      'a'.repeat(64),
      'a_b',
      'a.b',
      'a/b',
      '..',
      'ü',
    ])
      await expect(
        promoteCheckpoint(store, { name: nameOf('final'), outputModelId: bad }),
        bad,
      ).rejects.toMatchObject({
        code: 'invalid_argument',
      });
    // Even a checkpoint that does not exist is not looked at with a bad id.
    await expect(
      promoteCheckpoint(store, { name: nameOf('nope'), outputModelId: 'Bad' }),
    ).rejects.toMatchObject({
      code: 'invalid_argument',
    });
    expect(await allKeys(store)).toEqual(before);
    for (const ok of ['a', 'a1', 'my-model-2', 'a'.repeat(63)])
      expect(validateOutputModelId(ok)).toBe(ok);
  });

  it('refuses arc_v2 deltas and bare train states with a clear error, writing nothing', async () => {
    const store = await freshStore();
    await putHfExport(store, 'base', { createTime: at(1) });
    await putDelta(store, 'delta', 'base', { now: at(2) });
    await putDcp(store, 'state', { now: at(3) });
    const before = await allKeys(store);
    await expect(
      promoteCheckpoint(store, { name: nameOf('delta'), outputModelId: 'm' }),
    ).rejects.toMatchObject({
      code: 'incompatible',
      message: expect.stringMatching(
        /arc_v2 delta \(INFERENCE_ARC_V2\).*cannot be promoted.*Save a base checkpoint/,
      ),
    });
    await expect(
      promoteCheckpoint(store, { name: nameOf('state'), outputModelId: 'm' }),
    ).rejects.toThrow(/TRAINING train state without sampler weights and cannot be promoted/);
    await expect(
      promoteCheckpoint(store, { name: nameOf('missing'), outputModelId: 'm' }),
    ).rejects.toMatchObject({
      code: 'not_found',
    });
    expect(await allKeys(store)).toEqual(before);
  });

  it('refuses path traversal in names and base models', async () => {
    const store = await freshStore();
    await putHfExport(store, 'final', { createTime: at(1) });
    const before = await allKeys(store);
    for (const name of [
      `${nameOf('final')}/../../../../models/x`,
      nameOf('..'),
      `accounts/${ACCOUNT}/rlorTrainerJobs/../checkpoints/final`,
      `accounts/../../x/rlorTrainerJobs/job-1/checkpoints/final`,
    ])
      await expect(
        promoteCheckpoint(store, { name, outputModelId: 'm' }),
        name,
      ).rejects.toMatchObject({
        code: 'invalid_name',
      });
    await expect(
      promoteCheckpoint(store, {
        name: nameOf('final'),
        outputModelId: 'm',
        baseModel: 'accounts/x/models/../../y',
      }),
    ).rejects.toMatchObject({ code: 'invalid_argument' });
    expect(await allKeys(store)).toEqual(before);
  });

  it('leaves no partial model when a source file is corrupt', async () => {
    const store = await freshStore();
    await putHfExport(store, 'final', { createTime: at(1) });
    const key = `${ROOT}/final/model.safetensors`;
    const bytes = Buffer.from(await store.get(key));
    bytes[bytes.length - 1]! ^= 1; // same size, different content
    await store.put(key, bytes);
    await expect(
      promoteCheckpoint(store, { name: nameOf('final'), outputModelId: 'm' }),
    ).rejects.toMatchObject({
      code: 'corrupt',
      file: 'model.safetensors',
    });
    expect(await store.list(`accounts/${ACCOUNT}/models/`)).toEqual([]);
    expect(await store.stat(`accounts/${ACCOUNT}/models/m/${MODEL_FILE}`)).toBeNull();
  });
});

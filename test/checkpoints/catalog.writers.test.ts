// The catalog and promotion against the real writers (src/checkpoints/dcp, exports, deltas),
// on the bundled model: the files they write are what detection keys on.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointCatalog } from '../../src/checkpoints/catalog/index.js';
import { DcpCheckpoints, saveTrainState } from '../../src/checkpoints/dcp/index.js';
import { storeSnapshot, writeDeltaSnapshot } from '../../src/checkpoints/deltas/index.js';
import { exportHfModel, exportPeftAdapter } from '../../src/checkpoints/exports/index.js';
import { openObjectStore } from '../../src/checkpoints/object-store/index.js';
import type { ObjectStore } from '../../src/checkpoints/object-store/types.js';
import { promoteCheckpoint } from '../../src/checkpoints/promotion.js';
import { TransformerModel } from '../../src/engine/model.js';
import { ACCOUNT, JOB, nameOf, ROOT } from './catalog.helpers.js';

const BUNDLED = join(
  import.meta.dirname,
  '..',
  '..',
  'catalog',
  'accounts',
  'temper',
  'models',
  'byte-lm-3m',
);
const BASE_MODEL = 'accounts/temper/models/byte-lm-3m';
let dir: string;
let store: ObjectStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-catalog-writers-'));
  store = await openObjectStore(pathToFileURL(join(dir, 'store')).href);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('catalog and promotion with the real checkpoint writers', () => {
  it('detects DCP states, HF and PEFT exports and arc_v2 deltas, and promotes the promotable ones', async () => {
    const full = await TransformerModel.fromDirectory(BUNDLED, { threads: 1 });
    const lora = await TransformerModel.fromDirectory(BUNDLED, {
      threads: 1,
      lora: { rank: 2, alpha: 4 },
    });
    const dcp = new DcpCheckpoints(store, { prefix: ROOT });
    await saveTrainState(full, dcp, 'a-state');
    await saveTrainState(lora, dcp, 'b-lora-state');
    await exportHfModel(
      full,
      { store, prefix: `${ROOT}/c-base` },
      { dtype: 'BF16', baseModelDir: BUNDLED },
    );
    await exportPeftAdapter(
      lora,
      { store, prefix: `${ROOT}/d-lora` },
      { baseModelNameOrPath: BASE_MODEL },
    );
    await exportHfModel(
      full,
      { store, prefix: 'staging/next' },
      { dtype: 'BF16', baseModelDir: BUNDLED },
    );
    await writeDeltaSnapshot({
      previous: storeSnapshot(store, `${ROOT}/c-base`),
      next: storeSnapshot(store, 'staging/next'),
      previousSnapshotIdentity: 'c-base',
      target: { store, prefix: `${ROOT}/e-delta` },
    });
    const rows = await new CheckpointCatalog(store).listAll(
      `accounts/${ACCOUNT}/rlorTrainerJobs/${JOB}`,
    );
    const byName = Object.fromEntries(
      rows.map((r) => [r.name.split('/').pop(), [r.checkpointType, r.promotable]]),
    );
    expect(byName).toEqual({
      'a-state': ['TRAINING', false],
      'b-lora-state': ['TRAINING_LORA', false],
      'c-base': ['INFERENCE_BASE', true],
      'd-lora': ['INFERENCE_LORA', true],
      'e-delta': ['INFERENCE_ARC_V2', false],
    });

    const base = await promoteCheckpoint(store, {
      name: nameOf('c-base'),
      outputModelId: 'promoted-base',
      baseModel: BASE_MODEL,
    });
    expect(base).toMatchObject({ kind: 'HF_BASE_MODEL', state: 'READY', baseModel: BASE_MODEL });
    const reloaded = await TransformerModel.fromDirectory(
      join(dir, 'store', 'accounts', ACCOUNT, 'models', 'promoted-base'),
      {
        threads: 1,
      },
    );
    expect(reloaded.config).toEqual(full.config);
    const addon = await promoteCheckpoint(store, {
      name: nameOf('d-lora'),
      outputModelId: 'promoted-lora',
    });
    expect(addon).toMatchObject({
      kind: 'HF_PEFT_ADDON',
      peftDetails: { baseModel: BASE_MODEL, r: 2, loraAlpha: 4 },
    });
    await expect(
      promoteCheckpoint(store, { name: nameOf('e-delta'), outputModelId: 'nope' }),
    ).rejects.toMatchObject({
      code: 'incompatible',
    });
  });
});

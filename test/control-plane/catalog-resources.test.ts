// Training shapes, evaluators, secrets and deployments (a real DeploymentRegistry with a
// real replica process and a real hot-load through its gateway).
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileUrlToRoot } from '../../src/checkpoints/object-store/index.js';
import { baseTensors, headers, waitLoaded, writeFull } from '../deployments/fixtures.js';
import { type GatewayHarness, startGatewayHarness } from '../support/gateways.js';

let h: GatewayHarness;
beforeAll(async () => {
  h = await startGatewayHarness({ credentials: 'none' });
});
afterAll(async () => {
  await h?.close();
});

describe('trainingShapes', () => {
  it('lists the public shapes and resolves one to a profile', async () => {
    const l = await h.call('GET', '/v1/accounts/temper/trainingShapes');
    expect(l.json.trainingShapes.map((s: { name: string }) => s.name)).toEqual([
      'accounts/temper/trainingShapes/byte-lm-3m-lora',
      'accounts/temper/trainingShapes/byte-lm-3m-full',
      'accounts/temper/trainingShapes/byte-lm-3m-reference',
    ]);
    const p = await h.call(
      'GET',
      '/v1/accounts/temper/trainingShapes/byte-lm-3m-lora/versions/latest',
    );
    const version = {
      name: 'accounts/temper/trainingShapes/byte-lm-3m-lora/versions/1',
      latestValidated: true,
      snapshot: {
        trainerImageTag: 'local-process',
        maxSupportedContextLength: 512,
        nodeCount: 1,
        deploymentShapeVersion: 'accounts/temper/deploymentShapes/byte-lm-3m-cpu/versions/1',
        deploymentImageTag: 'local-process',
        acceleratorType: 'CPU',
        acceleratorCount: 1,
        baseModelWeightPrecision: 'FLOAT32',
        trainerShardingScheme: { pipelineParallelism: 1 },
        trainerMode: 'LORA_TRAINER',
        baseModel: 'accounts/temper/models/byte-lm-3m',
      },
    };
    expect(p.json).toEqual(version);
    // What resolve_training_profile sends for an unversioned shape name.
    const latest = await h.call(
      'GET',
      '/v1/accounts/temper/trainingShapes/byte-lm-3m-lora/versions?filter=latest_validated=true&pageSize=1',
    );
    expect(latest.json).toEqual({ trainingShapeVersions: [version], nextPageToken: '' });
    const g = await h.call('GET', '/v1/accounts/temper/trainingShapes/byte-lm-3m-full');
    expect(g.json).toMatchObject({
      trainerMode: 'POLICY_TRAINER',
      profile: { supportsLora: false },
    });
    expect(
      (await h.call('GET', '/v1/accounts/temper/trainingShapes/byte-lm-3m-full/versions/7')).status,
    ).toBe(404);
    expect((await h.call('GET', '/v1/accounts/alice/trainingShapes')).json.trainingShapes).toEqual(
      [],
    );
  });
});

describe('evaluators', () => {
  const source = 'export default function score(r) { return r.text.includes("4") ? 1 : 0; }\n';

  it('stores the source as an artifact and describes it', async () => {
    const r = await h.call('POST', '/v1/accounts/alice/evaluators', {
      body: {
        evaluatorId: 'has-four',
        evaluator: { source, sourceFilename: 'score.js', displayName: 'Has 4' },
      },
    });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      name: 'accounts/alice/evaluators/has-four',
      displayName: 'Has 4',
      state: 'ACTIVE',
      language: 'javascript',
      entryPoint: 'default',
      sourceKey: 'accounts/alice/evaluators/has-four/score.js',
      sourceBytes: source.length,
    });
    expect((await h.artifacts.get(r.json.sourceKey)).toString()).toBe(source);
    const code = await h.call('GET', '/v1/accounts/alice/evaluators/has-four:getSourceCode');
    expect(code.json.source).toBe(source);
    const l = await h.call('GET', '/v1/accounts/alice/evaluators');
    expect(l.json.evaluators).toHaveLength(1);
  });

  it('validates the source and never overwrites a taken id', async () => {
    const empty = await h.call('POST', '/v1/accounts/alice/evaluators', {
      body: { evaluatorId: 'e2', evaluator: { source: '' } },
    });
    expect(empty.json.error.message).toMatch(/^evaluator\.source: /);
    const name = await h.call('POST', '/v1/accounts/alice/evaluators', {
      body: { evaluatorId: 'e2', evaluator: { source, sourceFilename: '../x.js' } },
    });
    expect(name.json.error.message).toMatch(
      /^evaluator\.sourceFilename: must be a plain file name/,
    );
    const dup = await h.call('POST', '/v1/accounts/alice/evaluators', {
      body: {
        evaluatorId: 'has-four',
        evaluator: { source: 'export default () => 0;', sourceFilename: 'score.js' },
      },
    });
    expect(dup.status).toBe(409);
    expect((await h.artifacts.get('accounts/alice/evaluators/has-four/score.js')).toString()).toBe(
      source,
    );
  });

  it('deletes the row and the source', async () => {
    expect((await h.call('DELETE', '/v1/accounts/alice/evaluators/has-four')).status).toBe(200);
    expect(await h.artifacts.list('accounts/alice/evaluators/has-four/')).toEqual([]);
  });
});

describe('secrets', () => {
  it('never returns the value: not on create, get, list or update', async () => {
    const c = await h.call('POST', '/v1/accounts/alice/secrets', {
      body: { keyName: 'OPENAI_API_KEY', value: 'sk-very-secret' },
    });
    expect(c.status).toBe(200);
    expect(c.json).toMatchObject({
      name: 'accounts/alice/secrets/openai-api-key',
      keyName: 'OPENAI_API_KEY',
    });
    const named = await h.call('POST', '/v1/accounts/alice/secrets?secretId=judge', {
      body: { keyName: 'JUDGE_KEY', value: 'sk-judge' },
    });
    expect(named.json.name).toBe('accounts/alice/secrets/judge');
    const g = await h.call('GET', '/v1/accounts/alice/secrets/judge');
    const l = await h.call('GET', '/v1/accounts/alice/secrets');
    const u = await h.call('PATCH', '/v1/accounts/alice/secrets/judge', {
      body: { value: 'sk-rotated' },
    });
    expect(u.status).toBe(200);
    for (const body of [c.json, named.json, g.json, l.json, u.json]) {
      expect(JSON.stringify(body)).not.toMatch(/sk-/);
      expect(JSON.stringify(body)).not.toMatch(/"value"/);
    }
    expect((await h.store.get<{ value: string }>('secrets', 'alice', 'judge'))?.body.value).toBe(
      'sk-rotated',
    );
  });

  it('validates key names and updates', async () => {
    const bad = await h.call('POST', '/v1/accounts/alice/secrets', {
      body: { keyName: 'NO SPACES', value: 'x' },
    });
    expect(bad.json.error.message).toBe(
      'keyName: must be an environment variable name (A-Z, a-z, 0-9, _)',
    );
    const nothing = await h.call('PATCH', '/v1/accounts/alice/secrets/judge', { body: {} });
    expect(nothing.json.error.message).toBe('nothing to update: give keyName and/or value');
    expect((await h.call('DELETE', '/v1/accounts/alice/secrets/judge')).status).toBe(200);
    expect((await h.call('GET', '/v1/accounts/alice/secrets/judge')).status).toBe(404);
  });
});

describe('deployments', () => {
  it('create with hot-load settings, hot-load a snapshot, ledger get and reset, scale, delete', async () => {
    const refused = await h.call('POST', '/v1/accounts/alice/deployments', {
      body: { baseModel: 'accounts/temper/models/byte-lm-3m', hotLoadBucketUrl: 'file:///tmp' },
    });
    expect(refused.json.error.message).toMatch(
      /^hotLoadBucketUrl: a file:\/\/ bucket must lie under /,
    );
    const c = await h.call('POST', '/v1/accounts/alice/deployments?deploymentId=d1', {
      body: {
        baseModel: 'accounts/temper/models/byte-lm-3m',
        enableHotLoad: true,
        hotLoadTransitionType: 'SYNC',
        replica: { threads: 1 },
      },
    });
    expect(c.status).toBe(200);
    expect(c.json).toMatchObject({
      name: 'accounts/alice/deployments/d1',
      state: 'READY',
      replicaCount: 1,
      hotLoad: { bucketType: 'FW_HOSTED', transitionType: 'SYNC' },
    });
    const bucketDir = join(
      fileUrlToRoot(h.checkpoints.url),
      'accounts/alice/deployments/d1/snapshots',
    );
    expect(fileUrlToRoot(c.json.hotLoad.bucketUrl)).toBe(bucketDir);
    await writeFull(bucketDir, 'step-1', await baseTensors());
    const signal = await fetch(`${c.json.gatewayUrl}/hot_load/v1/models/hot_load`, {
      method: 'POST',
      headers: headers(c.json.name),
      body: JSON.stringify({ identity: 'step-1' }),
    });
    expect(signal.status).toBe(200);
    await waitLoaded(c.json.gatewayUrl, 'step-1');
    const ledger = await h.call('GET', '/v1/accounts/alice/deployments/d1/ledger');
    expect(ledger.json.snapshots.map((s: { identity: string }) => s.identity)).toEqual(['step-1']);
    const reset = await h.call('DELETE', '/v1/accounts/alice/deployments/d1/ledger');
    expect(reset.json.removed).toBe(1);
    const l = await h.call('GET', '/v1/accounts/alice/deployments');
    expect(l.json.deployments.map((d: { name: string }) => d.name)).toEqual([
      'accounts/alice/deployments/d1',
    ]);
    const s = await h.call('PATCH', '/v1/accounts/alice/deployments/d1:scale', {
      body: { minReplicaCount: 0, maxReplicaCount: 0 },
    });
    expect(s.json).toMatchObject({ state: 'READY', replicaCount: 0 });
    const bobSees = await h.call('GET', '/v1/accounts/alice/deployments/d1', { key: h.bob });
    expect(bobSees.status).toBe(404);
    expect((await h.call('DELETE', '/v1/accounts/alice/deployments/d1')).status).toBe(200);
    expect((await h.call('GET', '/v1/accounts/alice/deployments/d1')).status).toBe(404);
  });
});

// The Tinker-wire trainer gateway on the control-plane port, over HTTP, in front of a real
// trainer pod (a subprocess): sessions, futures with retrieve_future, every training op in
// JSON, ownership (another account's job is not found), and the statuses a Tinker client
// needs (4xx with a JSON body for permanent errors, never 409). The Python SDK drives the same
// routes in test/python-sdk; this file checks the translation itself.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createControlPlane } from '../../src/control-plane/index.js';
import {
  DType,
  ForwardBackwardOutputSchema,
  ForwardBackwardRequestSchema,
} from '../../src/gen/temper/tinkerwire/v1/tinker_wire_pb.js';
import { tempDir, testLauncher } from '../trainer/helpers.js';
import { type Harness, startHarness } from './harness.js';

const BASE = 'accounts/temper/models/byte-lm-3m';
let h: Harness;
let stopPod: () => Promise<void>;
let cleanup: () => Promise<void>;
const T = '/training/v1/rlorTrainerJobs/alice/gw1/api/v1';

/** A POST or GET as the Fireworks SDK sends it (X-API-Key only). */
async function op(name: string, body?: unknown, key?: string) {
  return h.call(body === undefined ? 'GET' : 'POST', `${T}/${name}`, {
    key: null,
    headers: { 'x-api-key': key ?? h.alice },
    ...(body === undefined ? {} : { body }),
  });
}

/** Starts a future op and polls it to the end. */
async function run(name: string, body: unknown) {
  const started = await op(name, body);
  expect(started.status, JSON.stringify(started.json)).toBe(200);
  for (;;) {
    const r = await op('retrieve_future', {
      request_id: started.json.request_id,
      allow_metadata_only: true,
    });
    expect(r.status).toBe(200);
    if (r.json.type !== 'try_again') return r.json;
  }
}

const td = (data: number[], dtype: 'int64' | 'float32') => ({ data, dtype, shape: [data.length] });
const text = (s: string) => [...Buffer.from(s)];

function datum(s: string, weights?: number[]) {
  const t = text(s);
  return {
    model_input: { chunks: [{ type: 'encoded_text', tokens: t.slice(0, -1) }] },
    loss_fn_inputs: {
      target_tokens: td(t.slice(1), 'int64'),
      ...(weights ? { weights: td(weights, 'float32') } : {}),
    },
  };
}

beforeAll(async () => {
  h = await startHarness();
  const tmp = await tempDir('gateway');
  cleanup = tmp.cleanup;
  const launcher = testLauncher(tmp.dir);
  const pod = await launcher.launch({
    baseModel: BASE,
    jobId: 'gw1',
    account: 'alice',
    checkpointUrl: h.checkpoints.url,
    inactivityTimeoutMs: 0,
  });
  stopPod = () => launcher.stop(pod.jobId);
  await h.store.create('rlorTrainerJobs', 'alice', 'gw1', {
    state: 'JOB_STATE_RUNNING',
    baseModel: BASE,
    trainerAddress: pod.address,
    trainerToken: pod.token,
  });
  await h.store.create('rlorTrainerJobs', 'alice', 'gw-done', {
    state: 'JOB_STATE_COMPLETED',
    baseModel: BASE,
  });
}, 120_000);

afterAll(async () => {
  await stopPod?.();
  await h?.close();
  await cleanup?.();
});

describe('trainer gateway', () => {
  let session = '';
  let model = '';

  it('answers healthz, capabilities and telemetry, and opens a session', async () => {
    expect((await op('healthz')).status).toBe(200);
    expect((await op('get_server_capabilities')).json).toEqual({
      supported_models: [{ model_name: BASE, max_context_length: 512 }],
    });
    expect(
      (await op('telemetry', { events: [], platform: 'linux', sdk_version: '1.2.30' })).json,
    ).toEqual({ status: 'accepted' });
    const s = await op('create_session', {
      tags: [],
      user_metadata: {},
      sdk_version: '0.23.0',
      type: 'create_session',
    });
    session = s.json.session_id;
    expect(session).toMatch(/^session-/);
    expect((await op('session_heartbeat', { session_id: session, type: 'x' })).json).toEqual({});
  });

  it('creates a model through a future and describes it', async () => {
    const created = await run('create_model', {
      session_id: session,
      model_seq_id: 1,
      base_model: BASE,
      lora_config: { rank: 0, train_mlp: true, train_attn: true, train_unembed: true },
      type: 'create_model',
    });
    model = created.model_id;
    expect(model).toMatch(/^model-/);
    const info = await op('get_info', { model_id: model, type: 'get_info' });
    expect(info.json).toMatchObject({ model_id: model, is_lora: false, lora_rank: 0 });
  });

  it('trains: forward, forward_backward with weights of any sign, optim_step', async () => {
    const d = datum('2+2=4', [0, 0, 1, -0.5]);
    const fwd = await run('forward', {
      model_id: model,
      seq_id: 1,
      forward_input: { data: [d], loss_fn: 'cross_entropy' },
    });
    expect(fwd.loss_fn_output_type).toBe('ArrayRecord');
    const lp = fwd.loss_fn_outputs[0].logprobs;
    expect(lp).toMatchObject({ dtype: 'float32', shape: [4] });
    expect(Object.keys(fwd.metrics)).toEqual(['loss:sum']);
    const fb = await run('forward_backward', {
      model_id: model,
      seq_id: 2,
      forward_backward_input: { data: [d], loss_fn: 'cross_entropy', loss_fn_config: null },
    });
    expect(fb.loss_fn_outputs[0].logprobs.data).toEqual(lp.data);
    const step = await run('optim_step', {
      model_id: model,
      seq_id: 3,
      adam_params: { learning_rate: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0 },
      grad_accumulation_normalization: 'num_loss_tokens',
      type: 'optim_step',
    });
    expect(step.metrics['grad_norm:mean']).toBeGreaterThan(0);
    const after = await run('forward', {
      model_id: model,
      seq_id: 4,
      forward_input: { data: [d], loss_fn: 'cross_entropy' },
    });
    expect(after.loss_fn_outputs[0].logprobs.data).not.toEqual(lp.data);
  });

  it('saves and loads state, lists DCP checkpoints, saves a sampler snapshot under the exact name', async () => {
    expect(
      await run('save_weights', { model_id: model, seq_id: 5, path: 'step-1', overwrite: false }),
    ).toEqual({ path: 'step-1' });
    expect((await op('list_checkpoints')).json).toEqual({ checkpoints: ['step-1'] });
    const loaded = await run('load_weights', {
      model_id: model,
      seq_id: 6,
      path: 'cross_job://gw1/step-1',
      optimizer: true,
    });
    expect(loaded.path).toBe('accounts/alice/rlorTrainerJobs/gw1/checkpoints/step-1');
    const saved = await run('save_weights_for_sampler', {
      model_id: model,
      seq_id: 7,
      path: 'snap-0001-abcdef12',
      checkpoint_type: 'base',
    });
    expect(saved).toEqual({ path: 'snap-0001-abcdef12' });
    const rows = await h.call('GET', '/v1/accounts/alice/rlorTrainerJobs/gw1/checkpoints');
    expect(rows.json.checkpoints.map((r: { name: string }) => r.name.split('/').pop())).toEqual(
      expect.arrayContaining(['step-1', 'snap-0001-abcdef12']),
    );
  });

  it('takes the plain tinker client’s protobuf forward_backward and answers it in protobuf', async () => {
    expect((await op('client/config', {})).json).toEqual({ use_pyqwest_transport: false });
    const t = text('2+2=4');
    const le = (xs: number[], Arr: typeof Int32Array | typeof BigInt64Array) =>
      new Uint8Array(
        (Arr === BigInt64Array ? BigInt64Array.from(xs.map(BigInt)) : Int32Array.from(xs)).buffer,
      );
    const body = toBinary(
      ForwardBackwardRequestSchema,
      create(ForwardBackwardRequestSchema, {
        modelId: model,
        seqId: 8,
        lossFn: 'cross_entropy',
        forwardOnly: true,
        data: [
          {
            modelInput: [
              { chunk: { case: 'encodedText', value: { tokens: le(t.slice(0, -1), Int32Array) } } },
            ],
            lossFnInputs: {
              target_tokens: {
                encoding: { case: 'dense', value: le(t.slice(1), BigInt64Array) },
                dtype: DType.INT64,
                shape: [4n],
              },
            },
          },
        ],
      }),
    );
    const headers = { 'x-api-key': h.alice };
    const started = await h.cp.app.inject({
      method: 'POST',
      url: `${T}/forward_backward`,
      headers: { ...headers, 'content-type': 'application/x-protobuf' },
      payload: Buffer.from(body),
    });
    expect(started.statusCode, started.body).toBe(200);
    const { request_id } = JSON.parse(started.body);
    const res = await h.cp.app.inject({
      method: 'POST',
      url: `${T}/retrieve_future`,
      headers: { ...headers, accept: 'application/x-protobuf, application/json' },
      payload: { request_id, allow_metadata_only: true },
    });
    expect(res.headers['content-type']).toContain('application/x-protobuf');
    const out = fromBinary(ForwardBackwardOutputSchema, res.rawPayload);
    expect(out.lossFnOutputs[0]?.numDatums).toBe(1n);
    const lp = out.lossFnOutputs[0]!.fields.logprobs!;
    expect(lp.dtype).toBe(DType.FLOAT32);
    const values = new Float32Array(new Uint8Array(lp.data).buffer);
    // The same weights as the JSON forward at seq_id 9.
    const json = await run('forward', {
      model_id: model,
      seq_id: 9,
      forward_input: { data: [datum('2+2=4')], loss_fn: 'cross_entropy' },
    });
    expect(Array.from(values)).toEqual(json.loss_fn_outputs[0].logprobs.data);
    expect(Object.keys(out.metrics)).toEqual(['loss:sum']);
  });

  it('fails a future with the trainer message, category user', async () => {
    const failed = await run('forward_backward', {
      model_id: model,
      seq_id: 10,
      forward_backward_input: { data: [datum('abc')], loss_fn: 'no_such_loss' },
    });
    expect(failed.category).toBe('user');
    expect(failed.error).toContain('no_such_loss');
  });

  it('refuses bad requests with a 4xx and a JSON message, never 409', async () => {
    const bad = await op('forward', { model_id: model, seq_id: 0, forward_input: { data: [] } });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toBe(
      'seq_id: Too small: expected number to be >0; forward_input.data: give at least one datum; forward_input.loss_fn: Invalid input: expected string, received undefined',
    );
    const badPath = await op('load_weights', {
      model_id: model,
      seq_id: 11,
      path: 'train_state_step_100',
      optimizer: false,
    });
    expect(badPath.status).toBe(400);
    expect(badPath.json.error.message).toContain("'train_state_step_100' is not a checkpoint name");
    const unknown = await op('retrieve_future', { request_id: 'req-nope' });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.message).toBe("unknown request_id 'req-nope'");
    const noOp = await op('no_such_op', {});
    expect(noOp.status).toBe(404);
  });

  it('after a control-plane restart an earlier future is lost (410) and its op resubmits', async () => {
    const body = {
      model_id: model,
      seq_id: 11,
      forward_backward_input: { data: [datum('2+2=4')], loss_fn: 'cross_entropy' },
    };
    const started = await op('forward_backward', body);
    const first = await run('forward_backward', body);
    // a second control plane over the same store and pod: the first one's futures are gone
    const cp2 = createControlPlane({
      store: h.store,
      orchestrator: h.orchestrator,
      artifacts: h.artifacts,
      checkpointUrl: h.checkpoints.url,
    });
    try {
      const call = async (name: string, b: unknown) => {
        const res = await cp2.app.inject({
          method: 'POST',
          url: `${T}/${name}`,
          headers: { 'x-api-key': h.alice },
          payload: b as Record<string, unknown>,
        });
        return { status: res.statusCode, json: JSON.parse(res.body) };
      };
      const lost = await call('retrieve_future', {
        request_id: started.json.request_id,
        allow_metadata_only: true,
      });
      expect(lost.status).toBe(410);
      expect(lost.json.error.message).toBe(
        `request_id '${started.json.request_id}' was issued before the control plane restarted and its result is lost: resubmit the original request`,
      );
      // an id no incarnation issued is still unknown
      expect((await call('retrieve_future', { request_id: 'req-nope' })).status).toBe(404);
      // the client resubmits the original op (same seq_id): the pod answers it once
      const again = await call('forward_backward', body);
      expect(again.status).toBe(200);
      let out: Record<string, unknown>;
      for (;;) {
        const r = await call('retrieve_future', { request_id: again.json.request_id });
        if (r.json.type !== 'try_again') {
          out = r.json;
          break;
        }
      }
      expect(out).toEqual(first);
    } finally {
      await cp2.close();
    }
  });

  it('unload_model drops a model (its later ops fail, a repeat succeeds); the others go on', async () => {
    const other = await run('create_model', {
      session_id: session,
      model_seq_id: 2,
      base_model: BASE,
      lora_config: { rank: 4, train_mlp: true, train_attn: true, train_unembed: false },
      type: 'create_model',
    });
    const id = other.model_id as string;
    expect(await run('unload_model', { model_id: id, type: 'unload_model' })).toEqual({
      model_id: id,
      type: 'unload_model',
    });
    const after = await run('forward', {
      model_id: id,
      seq_id: 1,
      forward_input: { data: [datum('2+2=4')], loss_fn: 'cross_entropy' },
    });
    expect(after.error).toBe(
      `forward: model '${id}' was unloaded (unload_model); create a new model`,
    );
    expect(after.category).toBe('user');
    expect(await run('unload_model', { model_id: id, type: 'unload_model' })).toEqual({
      model_id: id,
      type: 'unload_model',
    });
    const missing = await run('unload_model', { model_id: 'model-nope', type: 'unload_model' });
    expect(missing.error).toContain("model 'model-nope' does not exist");
    // the first model is untouched
    const still = await run('forward', {
      model_id: model,
      seq_id: 12,
      forward_input: { data: [datum('2+2=4')], loss_fn: 'cross_entropy' },
    });
    expect(still.loss_fn_outputs).toHaveLength(1);
  });

  it('hides another account’s trainer and refuses a stopped one with a 400', async () => {
    const other = await op('healthz', undefined, h.bob);
    expect(other.status).toBe(404);
    expect(other.json.error.message).toBe('accounts/alice/rlorTrainerJobs/gw1 not found');
    const done = await h.call('GET', '/training/v1/rlorTrainerJobs/alice/gw-done/api/v1/healthz');
    expect(done.status).toBe(400);
    expect(done.json.error.message).toBe(
      'trainer job accounts/alice/rlorTrainerJobs/gw-done is JOB_STATE_COMPLETED: resume it (POST /v1/accounts/alice/rlorTrainerJobs/gw-done:resume) and reconnect',
    );
  });
});

// Conformance of the seed's own Python client: the unmodified `fireworks-ai[training]` SDK
// (pinned in scripts/python-envs/fireworks-sdk.txt) drives trainers of a real `temper up`
// stack — REST on the control plane, the Tinker-wire gateway on the same port, real trainer
// pods. One test per flow; each flow is a Python script (trainer_flows.py) that prints one
// JSON line of what it saw. The plain `tinker` client's basic loop runs against the same
// gateway (tinker_basic.py).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUp, type UpProcess } from '../cli/support.js';
import { pythonEnv } from '../support/python-env.js';

const HERE = import.meta.dirname;
let home: string;
let up: UpProcess;
let creds: { apiUrl: string; apiKey: string; account: string };

interface FlowResult {
  code: number;
  out: Record<string, unknown>;
  stderr: string;
}

function flow(script: string, args: string[], timeoutMs = 240_000): Promise<FlowResult> {
  const env = pythonEnv('fireworks-sdk');
  return new Promise((resolve) => {
    execFile(
      env.python,
      [join(HERE, script), ...args],
      {
        cwd: HERE,
        timeout: timeoutMs,
        maxBuffer: 16 << 20,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '',
          FIREWORKS_API_KEY: creds.apiKey,
          FIREWORKS_BASE_URL: creds.apiUrl,
          TEMPER_ACCOUNT: creds.account,
        },
      },
      (err, stdout, stderr) => {
        const last = stdout.trim().split('\n').pop() ?? '';
        let out: Record<string, unknown> = {};
        try {
          out = JSON.parse(last);
        } catch {
          // reported through code and stderr
        }
        resolve({ code: err ? ((err.code as number) ?? 1) : 0, out, stderr });
      },
    );
  });
}

/** Runs a flow and fails with its stderr when it did not finish. */
async function ok(script: string, name: string): Promise<Record<string, unknown>> {
  const r = await flow(script, [name]);
  if (r.code !== 0)
    throw new Error(`${script} ${name} exited with ${r.code}:\n${r.stderr.slice(-6000)}`);
  return r.out;
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'temper-pysdk-'));
  up = await startUp(home);
  creds = JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8'));
}, 180_000);

afterAll(async () => {
  if (up?.child.exitCode === null) {
    up.child.kill('SIGTERM');
    await Promise.race([up.exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (up.child.exitCode === null) up.child.kill('SIGKILL');
  }
  await rm(home, { recursive: true, force: true });
}, 60_000);

describe('fireworks-ai[training] against temper up', () => {
  it('TrainerJobManager: create, wait, get, delete; shapes resolve to a profile', async () => {
    const out = await ok('trainer_flows.py', 'lifecycle');
    expect(out.job_id).toMatch(/^training-api-service-[0-9a-f]{8}$/);
    expect(out.job_name).toBe(`accounts/${creds.account}/rlorTrainerJobs/${out.job_id}`);
    expect(out.base_url).toBe(
      `${creds.apiUrl}/training/v1/rlorTrainerJobs/${creds.account}/${out.job_id}`,
    );
    expect(out.existing_base_url).toBe(out.base_url);
    expect(out.state).toBe('JOB_STATE_RUNNING');
    expect(out.inactivity_timeout).toBe('1800s');
    expect(out.profile_trainer_mode).toBe('POLICY_TRAINER');
    expect(out.profile_deployment_shape_version).toBe(
      'accounts/temper/deploymentShapes/byte-lm-3m-cpu/versions/1',
    );
    expect(out.profile_max_context_length).toBe(512);
    expect(out.after_delete).toBeNull();
  }, 300_000);

  it('built-in losses: cross_entropy steps lower the loss; every policy loss runs', async () => {
    const out = await ok('trainer_flows.py', 'builtin_losses');
    const losses = out.losses as number[];
    expect(losses).toHaveLength(4);
    expect(losses[3]!).toBeLessThan(losses[0]!);
    expect(Object.keys(out.rl_metrics as object).sort()).toEqual([
      'cispo',
      'dro',
      'importance_sampling',
      'ppo',
    ]);
    for (const keys of Object.values(out.rl_metrics as Record<string, string[]>)) {
      expect(keys).toContain('loss:sum');
      for (const k of keys) expect(k.split(':')).toHaveLength(2);
    }
    expect(out.optim_metrics).toContain('grad_norm:mean');
    expect(out.capabilities).toEqual(['accounts/temper/models/byte-lm-3m']);
  }, 300_000);

  it('custom loss: the DPO guide with a policy and a forward-only reference trainer', async () => {
    const out = await ok('trainer_flows.py', 'custom_dpo');
    expect(out.steps).toBe(4);
    const margins = out.margins as number[];
    expect(margins[0]).toBeCloseTo(0, 4); // policy == reference before the first step
    expect(margins[margins.length - 1]!).toBeGreaterThan(margins[0]!);
    expect(out.reference_drift).toBe(0);
    expect(out.metric_keys).toEqual(expect.arrayContaining(['accuracy', 'dpo_loss', 'margin']));
  }, 300_000);

  it('save and load state: logprobs restored, cross-job load, sampler base and delta, promotion after delete', async () => {
    const out = await ok('trainer_flows.py', 'save_load');
    expect(out.saved_path).toBe('step-2');
    expect(out.moved as number).toBeGreaterThan(1e-4);
    expect(out.restored).toBe(0);
    expect(out.restored_weights_only).toBe(0);
    expect(out.cross_job).toBe(0);
    expect(String(out.cross_job_ref)).toMatch(
      /^cross_job:\/\/training-api-service-[0-9a-f]{8}\/step-2$/,
    );
    const session = out.sampler_session as string;
    // The snapshot identity is the name the client sent, session-qualified by the client.
    expect(out.sampler).toEqual([
      `snap-1-${session}`,
      `snap-1-${session}`,
      `snap-2-${session}`,
      `snap-2-${session}`,
    ]);
    expect(out.dcp_names).toEqual(['step-2']);
    const rows = out.rows as [string, string, boolean][];
    expect(rows).toEqual(
      expect.arrayContaining([
        ['step-2', expect.stringMatching(/^TRAINING/), false],
        [`snap-1-${session}`, 'INFERENCE_BASE', true],
        [`snap-2-${session}`, 'INFERENCE_ARC_V2', false],
      ]),
    );
    expect(out.promoted).toMatchObject({
      name: `accounts/${creds.account}/models/sdk-promoted`,
      state: 'READY',
    });
  }, 300_000);

  it('reconnect: a trainer stopped for inactivity is resumed and the loop reloads its state', async () => {
    const out = await ok('trainer_flows.py', 'reconnect');
    expect(out.stopped_state).toBe('JOB_STATE_COMPLETED');
    expect(out.resumed_state).toBe('JOB_STATE_RUNNING');
    expect(out.checkpoints).toEqual(['step-1']);
    expect(out.restored).toBe(0);
  }, 300_000);

  it('the plain tinker client: its basic loop with a tml- key, forward_backward in protobuf', async () => {
    const out = await ok('tinker_basic.py', 'basic');
    const losses = out.losses as number[];
    expect(losses).toHaveLength(4);
    expect(losses[3]!).toBeLessThan(losses[0]!);
    expect(out.logprob_lengths).toEqual([30, 19]);
    expect(out.saved_path).toBe('tinker-step-4');
    expect(out).toMatchObject({ is_lora: true, lora_rank: 8 });
    expect(out.models).toEqual(['accounts/temper/models/byte-lm-3m']);
  }, 300_000);

  it('bad requests fail with the server’s message; unload_model, then a new model trains', async () => {
    const out = await ok('trainer_flows.py', 'errors');
    expect(String(out.create)).toContain(
      "Model 'accounts/temper/models/no-such-model' not found in account",
    );
    expect(String(out.loss)).toContain("unknown built-in loss 'no_such_loss'");
    expect(String(out.load)).toContain('never-saved');
    expect(String(out.token)).toContain('99999');
    expect(out).toMatchObject({ unloaded: true, fresh_model: true, fresh_logprobs: true });
  }, 300_000);
});

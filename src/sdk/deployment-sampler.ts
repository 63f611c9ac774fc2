// Sampling from an inference deployment (OpenAI-compatible completions with token ids), and
// the hot-load client that brings a deployment onto a saved snapshot.
import { z } from 'zod';
import type { Renderer } from '../tokenizers/index.js';
import type { ConcurrencyController } from './concurrency.js';

export class DeploymentSamplerError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'DeploymentSamplerError';
  }
}

export interface DeploymentSamplerOptions {
  /** Gateway URL (http://host:port). */
  inferenceUrl: string;
  /** accounts/{a}/deployments/{d} */
  deployment: string;
  /** accounts/{a}/models/{m} of the base model (sent as fireworks-model when set). */
  model?: string;
  apiKey?: string;
  /** Renders `messages` into prompt tokens (required for messages). */
  renderer?: Renderer;
  concurrencyController?: ConcurrencyController;
  fetch?: typeof fetch;
}

export interface SampleWithTokensOptions {
  messages?: { role: string; content: string }[];
  promptTokens?: number[];
  n?: number;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop?: string[];
  logprobs?: boolean;
  topLogprobs?: number;
  /** Ask for training-aligned prompt logprobs too (inferenceLogprobs then has P+C-1 entries). */
  echo?: boolean;
  /** Prompts at or over this length are not sent; completions over it are dropped. */
  maxSeqLen?: number;
  /** Keep sampling past end-of-text (fixed-length rollouts, benchmarks). */
  ignoreEos?: boolean;
  /** Pins the rollout to one replica (x-session-affinity / x-multi-turn-session-id). */
  sessionId?: string;
}

export interface SampledCompletion {
  text: string;
  fullTokens: number[];
  promptLen: number;
  completionLen: number;
  finishReason: string;
  inferenceLogprobs: number[] | null;
  logprobsEchoed: boolean;
  snapshotIdentity: string | null;
  prefillQueueDuration: number;
}

const responseSchema = z.object({
  prompt_token_ids: z.array(z.number().int()),
  choices: z.array(
    z.object({
      text: z.string(),
      token_ids: z.array(z.number().int()),
      finish_reason: z.string(),
      logprobs: z.object({ token_logprobs: z.array(z.number().nullable()) }).nullable(),
      raw_output: z.object({ completion: z.string() }).optional(),
    }),
  ),
  usage: z.object({
    prompt_tokens: z.number(),
    prompt_tokens_details: z.object({ cached_tokens: z.number() }).optional(),
  }),
  server_timing: z.object({ prefill_queue_duration: z.number() }),
  snapshot_identity: z.string().nullable(),
});

export class DeploymentSampler {
  private readonly fetch: typeof fetch;
  constructor(readonly opts: DeploymentSamplerOptions) {
    this.fetch = opts.fetch ?? fetch;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      'content-type': 'application/json',
      'fireworks-deployment': this.opts.deployment,
      ...(this.opts.model ? { 'fireworks-model': this.opts.model } : {}),
      ...(this.opts.apiKey ? { authorization: `Bearer ${this.opts.apiKey}` } : {}),
      ...extra,
    };
  }

  async sampleWithTokens(o: SampleWithTokensOptions): Promise<SampledCompletion[]> {
    let prompt: number[];
    if (o.promptTokens) prompt = o.promptTokens;
    else if (o.messages) {
      if (!this.opts.renderer)
        throw new DeploymentSamplerError(
          400,
          'sampleWithTokens({messages}) needs a renderer in the sampler options',
        );
      prompt = this.opts.renderer.renderGenerationPrompt(o.messages as never);
    } else throw new DeploymentSamplerError(400, 'sampleWithTokens needs messages or promptTokens');
    if (o.maxSeqLen !== undefined && prompt.length >= o.maxSeqLen) return [];
    const n = o.n ?? 1;
    const one = async (i: number): Promise<SampledCompletion> => {
      const ctl = this.opts.concurrencyController;
      await ctl?.acquire();
      try {
        const res = await this.fetch(`${this.opts.inferenceUrl}/inference/v1/completions`, {
          method: 'POST',
          headers: this.headers(
            o.sessionId
              ? { 'x-session-affinity': o.sessionId, 'x-multi-turn-session-id': o.sessionId }
              : {},
          ),
          body: JSON.stringify({
            prompt,
            max_tokens: o.maxTokens ?? 256,
            temperature: o.temperature ?? 1,
            top_p: o.topP ?? 1,
            top_k: o.topK ?? 0,
            seed: o.seed !== undefined ? o.seed + i : undefined,
            stop: o.stop,
            logprobs: o.logprobs || o.echo ? (o.topLogprobs ?? 0) : undefined,
            echo: o.echo ?? false,
            ...(o.ignoreEos ? { ignore_eos: true } : {}),
          }),
        });
        const raw = (await res.json()) as unknown;
        if (!res.ok)
          throw new DeploymentSamplerError(
            res.status,
            `${res.status}: ${(raw as { error?: { message?: string } }).error?.message ?? 'inference error'}`,
          );
        const body = responseSchema.parse(raw);
        const c = body.choices[0];
        if (!c) throw new DeploymentSamplerError(502, 'the deployment returned no choice');
        ctl?.record({
          prefillQueueDuration: body.server_timing.prefill_queue_duration,
          promptTokens: body.usage.prompt_tokens,
          cachedTokens: body.usage.prompt_tokens_details?.cached_tokens ?? 0,
        });
        const lps = c.logprobs?.token_logprobs ?? null;
        return {
          text: c.raw_output?.completion ?? c.text,
          fullTokens: [...prompt, ...c.token_ids],
          promptLen: prompt.length,
          completionLen: c.token_ids.length,
          finishReason: c.finish_reason,
          inferenceLogprobs: lps ? (o.echo ? (lps.slice(1) as number[]) : (lps as number[])) : null,
          logprobsEchoed: o.echo ?? false,
          snapshotIdentity: body.snapshot_identity,
          prefillQueueDuration: body.server_timing.prefill_queue_duration,
        };
      } finally {
        ctl?.release();
      }
    };
    const all = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
    return o.maxSeqLen !== undefined ? all.filter((c) => c.fullTokens.length <= o.maxSeqLen!) : all;
  }
}

export interface HotLoadOptions {
  previousSnapshotIdentity?: string;
  resetPromptCache?: 'all' | 'none' | 'new_session';
  extraFieldsIgnore?: string[];
}

/** Hot-load calls on a deployment's gateway: signal, status, wait. */
export class HotLoadClient {
  constructor(
    readonly opts: { inferenceUrl: string; deployment: string; model?: string; apiKey?: string },
  ) {}

  private headers(): Record<string, string> {
    return {
      'content-type': 'application/json',
      'fireworks-deployment': this.opts.deployment,
      ...(this.opts.model ? { 'fireworks-model': this.opts.model } : {}),
      ...(this.opts.apiKey ? { authorization: `Bearer ${this.opts.apiKey}` } : {}),
    };
  }

  async hotload(identity: string, o: HotLoadOptions = {}): Promise<void> {
    const res = await fetch(`${this.opts.inferenceUrl}/hot_load/v1/models/hot_load`, {
      method: 'POST',
      headers: this.headers(),
      body: JSON.stringify({
        identity,
        ...(o.previousSnapshotIdentity
          ? {
              incremental_snapshot_metadata: {
                previous_snapshot_identity: o.previousSnapshotIdentity,
                compression_format: 'arc_v2',
                checksum_format: 'alder32',
              },
            }
          : {}),
        reset_prompt_cache: o.resetPromptCache ?? 'all',
        ...(o.extraFieldsIgnore
          ? { validation: { extra_fields_ignore: o.extraFieldsIgnore } }
          : {}),
      }),
    });
    if (!res.ok) {
      const body = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
      throw new DeploymentSamplerError(
        res.status,
        body.error?.message ?? `hot-load failed with ${res.status}`,
      );
    }
  }

  async status(): Promise<{
    replicas: {
      replica_id: string;
      readiness: boolean;
      current_snapshot_identity: string | null;
      loading_state: { stage: string; error: string | null };
    }[];
  }> {
    const res = await fetch(`${this.opts.inferenceUrl}/hot_load/v1/models/hot_load`, {
      headers: this.headers(),
    });
    return (await res.json()) as never;
  }

  /**
   * Polls until every replica serves `identity`; throws on a replica's load error or timeout
   * (600 s). The first polls come quickly (5 ms, doubling up to `pollMs`): a small model's
   * delta loads in tens of milliseconds, and an RL step waits for it, so a fixed 50 ms poll
   * would add 25 ms to it on average; a long load is polled every `pollMs`.
   */
  async waitForIdentity(identity: string, timeoutMs = 600_000, pollMs = 50): Promise<void> {
    const t0 = Date.now();
    let wait = Math.min(5, pollMs);
    for (;;) {
      const s = await this.status();
      if (
        s.replicas.length > 0 &&
        s.replicas.every((r) => r.readiness && r.current_snapshot_identity === identity)
      )
        return;
      const failed = s.replicas.find(
        (r) => r.loading_state.stage === 'error' && r.current_snapshot_identity !== identity,
      );
      if (failed)
        throw new DeploymentSamplerError(
          409,
          `${failed.replica_id} failed to load ${identity}: ${failed.loading_state.error}`,
        );
      if (Date.now() - t0 > timeoutMs)
        throw new DeploymentSamplerError(504, `timed out waiting for ${identity}`);
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, pollMs);
    }
  }

  async hotloadAndWait(
    identity: string,
    o: HotLoadOptions = {},
    timeoutMs?: number,
  ): Promise<void> {
    await this.hotload(identity, o);
    await this.waitForIdentity(identity, timeoutMs);
  }
}

/** A saved sampler snapshot (TrainingClient.saveWeightsForSampler's result has this shape). */
export interface SnapshotRef {
  path: string;
  checkpointType: 'base' | 'delta';
  previousSnapshotIdentity?: string | undefined;
}

/**
 * A sampler on a deployment that serves `snapshot`: hot-loads it (a base as a full snapshot,
 * a delta as arc_v2 against its previous snapshot) and waits until every replica serves it.
 */
export async function createDeploymentSampler(
  opts: DeploymentSamplerOptions & { snapshot?: SnapshotRef; timeoutMs?: number },
): Promise<DeploymentSampler> {
  const { snapshot, timeoutMs, ...samplerOpts } = opts;
  if (snapshot) {
    if (snapshot.checkpointType === 'delta' && !snapshot.previousSnapshotIdentity)
      throw new DeploymentSamplerError(
        400,
        `delta snapshot ${snapshot.path} has no previousSnapshotIdentity`,
      );
    const hl = new HotLoadClient({
      inferenceUrl: opts.inferenceUrl,
      deployment: opts.deployment,
      ...(opts.model ? { model: opts.model } : {}),
      ...(opts.apiKey ? { apiKey: opts.apiKey } : {}),
    });
    await hl.hotloadAndWait(
      snapshot.path,
      snapshot.checkpointType === 'delta'
        ? { previousSnapshotIdentity: snapshot.previousSnapshotIdentity }
        : {},
      timeoutMs,
    );
  }
  return new DeploymentSampler(samplerOpts);
}

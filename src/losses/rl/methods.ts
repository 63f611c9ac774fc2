/**
 * The managed-RFT loss methods (`--rl-loss-method`) with their documented defaults:
 *
 *   method       clip                  KL          aggregation            IS level
 *   grpo         [0.8, 1.2]            k3, 0.001   token-mean             token
 *   dapo         [0.8, 1.28]           none        token-mean             token
 *   gspo-token   [1-3e-4, 1+4e-4]      none        seq-mean-token-mean    sequence
 *
 * `kl_beta` 0 or unset means the method's default; a positive value is only allowed for
 * grpo, and the other methods reject it with the exact messages job creation returns.
 */
import { configError } from '../errors.js';
import type { LossFn } from '../types.js';
import type { Aggregation } from './common.js';
import { gspoLoss } from './gspo.js';
import { dapoLoss, grpoLoss } from './ppo.js';
import type { TisConfigInput } from './tis.js';

export const RL_LOSS_METHODS = ['grpo', 'dapo', 'gspo-token'] as const;
export type RlLossMethod = (typeof RL_LOSS_METHODS)[number];

export interface RlLossMethodSettings {
  readonly method: RlLossMethod;
  /** The ratio is clipped to [1 - epsLow, 1 + epsHigh]. */
  readonly epsLow: number;
  readonly epsHigh: number;
  readonly klBeta: number;
  readonly aggregation: Aggregation;
  /** Level of the policy importance ratio: per token, or one per sequence (GSPO). */
  readonly isLevel: 'token' | 'sequence';
}

export const RL_LOSS_METHOD_DEFAULTS: Readonly<Record<RlLossMethod, RlLossMethodSettings>> = {
  grpo: {
    method: 'grpo',
    epsLow: 0.2,
    epsHigh: 0.2,
    klBeta: 0.001,
    aggregation: 'token-mean',
    isLevel: 'token',
  },
  dapo: {
    method: 'dapo',
    epsLow: 0.2,
    epsHigh: 0.28,
    klBeta: 0,
    aggregation: 'token-mean',
    isLevel: 'token',
  },
  'gspo-token': {
    method: 'gspo-token',
    epsLow: 3e-4,
    epsHigh: 4e-4,
    klBeta: 0,
    aggregation: 'seq-mean-token-mean',
    isLevel: 'sequence',
  },
};

/** The method name as the control plane spells it in messages (GSPO_TOKEN). */
const ENUM_NAME: Record<RlLossMethod, string> = {
  grpo: 'GRPO',
  dapo: 'DAPO',
  'gspo-token': 'GSPO_TOKEN',
};

/** The refusal of a KL weight for a method without a KL term (`name` as the enum spells it). */
export function klBetaRefusal(name: string): string {
  return `loss_config.kl_beta must be 0/unset when method is ${name}`;
}

export interface RlLossMethodInput {
  /** Defaults to grpo. */
  method?: string;
  /** `--rl-kl-beta`: >= 0; 0 or unset uses the method's default. */
  klBeta?: number;
}

/** Resolves and validates a method + kl_beta into the settings a job runs with. */
export function resolveRlLossMethod(input: RlLossMethodInput = {}): RlLossMethodSettings {
  const method = input.method ?? 'grpo';
  if (!(RL_LOSS_METHODS as readonly string[]).includes(method)) {
    throw configError(
      `unknown rl loss method '${method}'; valid methods are ${RL_LOSS_METHODS.join(', ')}`,
    );
  }
  const defaults = RL_LOSS_METHOD_DEFAULTS[method as RlLossMethod];
  const beta = input.klBeta;
  if (beta === undefined || beta === 0) return defaults;
  if (!Number.isFinite(beta) || beta < 0) {
    throw configError(`loss_config.kl_beta must be >= 0, got ${beta}`);
  }
  if (defaults.method !== 'grpo') {
    throw configError(klBetaRefusal(ENUM_NAME[defaults.method]));
  }
  return { ...defaults, klBeta: beta };
}

export interface RlMethodLossOptions extends RlLossMethodInput {
  /** Train/inference TIS correction; token level with cap 5 by default, null for none. */
  tis?: TisConfigInput | null;
}

/** The loss a managed RFT job trains with: already a mean (no further normalisation). */
export function rlMethodLoss(options: RlMethodLossOptions = {}): LossFn {
  const s = resolveRlLossMethod(options);
  const tis = options.tis === undefined ? {} : options.tis;
  switch (s.method) {
    case 'grpo':
      return grpoLoss({
        epsClip: s.epsLow,
        epsClipHigh: s.epsHigh,
        klBeta: s.klBeta,
        aggregation: s.aggregation,
        tis,
      });
    case 'dapo':
      return dapoLoss({
        epsClip: s.epsLow,
        epsClipHigh: s.epsHigh,
        aggregation: s.aggregation,
        tis,
      });
    case 'gspo-token':
      return gspoLoss({
        clipRatioLow: s.epsLow,
        clipRatioHigh: s.epsHigh,
        aggregation: s.aggregation,
        tis,
      });
  }
}

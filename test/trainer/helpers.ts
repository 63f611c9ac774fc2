// Tiny model directories and real trainer pods (subprocesses on loopback) for trainer and SDK tests.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'vitest';
import { writeHfModelDir } from '../../src/checkpoints/hf-model-dir.js';
import type { ModelConfig } from '../../src/engine/config.js';
import { ERROR_CODE_METADATA_KEY, TrainerError } from '../../src/trainer/errors.js';
import { LocalProcessLauncher } from '../../src/trainer/launcher/index.js';
import { encodeInt32, encodeTensor } from '../../src/trainer/wire.js';
import { TINY, tinyModel } from '../engine/helpers.js';

export { TINY };

/** A temporary folder removed by the returned cleanup. */
export async function tempDir(
  prefix: string,
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `temper-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Writes a random tiny model (TINY config) as an HF-layout directory. */
export async function writeTinyModelDir(
  dir: string,
  opts: { seed?: number; config?: Partial<ModelConfig> } = {},
): Promise<string> {
  const model = tinyModel({ seed: opts.seed ?? 7, config: opts.config });
  await writeHfModelDir(dir, {
    config: model.config,
    tensors: model.namedTensors((n) => !n.includes('.lora_')),
  });
  return dir;
}

/** A launcher whose job folders live in `stateDir`, with quiet pods. */
export function testLauncher(stateDir: string): LocalProcessLauncher {
  return new LocalProcessLauncher({
    stateDir,
    env: { ...process.env, TEMPER_LOG_LEVEL: process.env.TEMPER_TEST_POD_LOG_LEVEL ?? 'warn' },
  });
}

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function randomTokens(r: () => number, n: number, vocab = TINY.vocabSize): number[] {
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

/** A wire datum with target_tokens (int64, like tinker) and float32 loss inputs. */
export function wireDatum(
  tokens: readonly number[],
  targets: readonly number[],
  inputs: Record<string, readonly number[]> = {},
) {
  const lossFnInputs: Record<string, ReturnType<typeof encodeTensor>> = {
    target_tokens: encodeTensor(targets, 'int64'),
  };
  for (const [k, v] of Object.entries(inputs)) lossFnInputs[k] = encodeTensor(v, 'float32');
  return {
    modelInput: [
      { chunk: { case: 'encodedText' as const, value: { tokens: encodeInt32(tokens) } } },
    ],
    lossFnInputs,
  };
}

/** Asserts a raw gRPC call fails with `status` and temper error code `code`. */
export async function expectGrpcError(
  promise: Promise<unknown>,
  status: grpc.status,
  code: string,
): Promise<grpc.ServiceError> {
  const error = await promise.then(
    () => {
      throw new Error(`expected failure ${grpc.status[status]} / ${code}`);
    },
    (e: unknown) => e as grpc.ServiceError,
  );
  expect(grpc.status[error.code], error.details).toBe(grpc.status[status]);
  expect(error.metadata.get(ERROR_CODE_METADATA_KEY)[0], error.details).toBe(code);
  return error;
}

/** Asserts an SDK call rejects with a TrainerError of `code`. */
export async function expectTrainerError(
  promise: Promise<unknown>,
  code: string,
): Promise<TrainerError> {
  const error = await promise.then(
    () => {
      throw new Error(`expected a TrainerError ${code}`);
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TrainerError);
  expect((error as TrainerError).code, (error as Error).message).toBe(code);
  return error as TrainerError;
}

export async function waitFor(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `temper trainer serve`: run a trainer pod in this process until SIGTERM or inactivity. */
import { type Command, InvalidArgumentError } from 'commander';
import { MODEL_RESOURCE_NAME } from '../checkpoints/promotion.js';
import { checkTrainerToken, TRAINER_TOKEN_ENV } from './auth.js';
import { parseDuration } from './duration.js';
import { parseEngineSettings } from './engine-settings.js';
import { DEFAULT_INACTIVITY_TIMEOUT_MS, serveTrainer } from './serve.js';

function int(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`expected an integer >= ${min}`);
    return n;
  };
}

function modelName(value: string): string {
  if (!MODEL_RESOURCE_NAME.test(value))
    throw new InvalidArgumentError(
      'expected a model resource name accounts/{account}/models/{model}',
    );
  return value;
}

function duration(value: string): number {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

interface ServeFlags {
  baseModel: string;
  baseModelName?: string;
  host: string;
  port: number;
  metricsPort: number;
  loraRank: number;
  loraAlpha?: number;
  threads?: number;
  baseDtype?: string;
  recompute?: boolean;
  inactivityTimeout: number;
  forwardOnly?: boolean;
  jobId?: string;
  stateFile?: string;
  checkpointUrl?: string;
  account?: string;
  maxModels: number;
  logLevel?: string;
}

export function addTrainerCommand(program: Command): void {
  const trainer = program.command('trainer').description('trainer pods (the Training API backend)');
  trainer
    .command('serve')
    .description(
      'serve one base model over gRPC (TrainerService) until SIGTERM or inactivity; every call must present the token in TEMPER_TRAINER_TOKEN',
    )
    .requiredOption('--base-model <name|dir>', 'catalog model name or HF-layout directory')
    .option(
      '--base-model-name <name>',
      'the model resource (accounts/{a}/models/{id}) a --base-model directory holds; checkpoints record it as their base',
      modelName,
    )
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option('--port <n>', 'port to bind (0 = any free port)', int(0), 0)
    .option(
      '--metrics-port <n>',
      'port of GET /metrics (Prometheus; the same token) on the same host (0 = any free port)',
      int(0),
      0,
    )
    .option(
      '--lora-rank <r>',
      'default LoRA rank of created models (0 = full-parameter)',
      int(0),
      0,
    )
    .option('--lora-alpha <a>', 'default LoRA alpha (default 2 x rank)', positive)
    .option('--threads <n>', 'engine threads per model (default: all cores)', int(1))
    .option(
      '--base-dtype <dtype>',
      "storage of LoRA models' frozen base: float32 (default) or bfloat16 (half the memory, same results)",
    )
    .option(
      '--recompute',
      'recompute each layer in backward instead of keeping its activations (less memory, about one more forward)',
    )
    .option(
      '--inactivity-timeout <duration>',
      'stop after this long with no operation or heartbeat, e.g. 30m, 2h; 0 disables',
      duration,
      DEFAULT_INACTIVITY_TIMEOUT_MS,
    )
    .option('--forward-only', 'only forward-only (reference) models')
    .option('--job-id <id>', 'the trainer job id this pod serves')
    .option('--state-file <path>', 'JSON file recording the address and state')
    .option(
      '--checkpoint-url <url>',
      'checkpoint store root (file:///dir, s3://bucket/prefix, gs://bucket/prefix); checkpoints are refused without one',
    )
    .option('--account <id>', 'account of the trainer job (checkpoint names)', 'default')
    .option('--max-models <n>', 'models the pod holds at most', int(1), 8)
    .option('--log-level <level>', 'pino log level (default info, or TEMPER_LOG_LEVEL)')
    .action(async (flags: ServeFlags) => {
      const token = checkTrainerToken(process.env[TRAINER_TOKEN_ENV]);
      // Not inherited by anything this process starts.
      delete process.env[TRAINER_TOKEN_ENV];
      const running = await serveTrainer({
        baseModel: flags.baseModel,
        ...(flags.baseModelName ? { baseModelName: flags.baseModelName } : {}),
        host: flags.host,
        port: flags.port,
        metricsPort: flags.metricsPort,
        loraRank: flags.loraRank,
        loraAlpha: flags.loraAlpha,
        threads: flags.threads,
        engine: parseEngineSettings({ baseDtype: flags.baseDtype, recompute: flags.recompute }),
        inactivityTimeoutMs: flags.inactivityTimeout,
        forwardOnly: flags.forwardOnly ?? false,
        jobId: flags.jobId,
        stateFile: flags.stateFile,
        checkpointUrl: flags.checkpointUrl,
        account: flags.account,
        maxModels: flags.maxModels,
        logLevel: flags.logLevel,
        token,
      });
      process.on('SIGTERM', () => void running.stop('SIGTERM'));
      process.on('SIGINT', () => void running.stop('SIGINT'));
      await running.stopped;
      process.exit(0);
    });
}

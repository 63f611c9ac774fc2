/**
 * `temper recipe <name> --config <file.json|yaml>`: runs a cookbook recipe (src/recipes) —
 * trainers as local pods under the config's log_path, or, with --platform, as rlorTrainerJobs
 * of the control plane (`temper up` or --api-url/--api-key). Flags override the file's
 * fields; rerunning on the same log_path resumes.
 */
import type { Command } from 'commander';
import { runRecipeFile } from '../../recipes/kit/index.js';
import { resolveConnection } from '../api/connection.js';

interface RecipeFlags {
  config: string;
  logPath?: string;
  outputModelId?: string;
  platform?: boolean;
  apiUrl?: string;
  apiKey?: string;
  account?: string;
  mlflowTrackingUri?: string;
  mlflowExperimentName?: string;
  mlflowRunName?: string;
  wandbProject?: string;
  wandbEntity?: string;
  wandbApiKey?: string;
  wandbRunName?: string;
}

/** The flags that override config fields, by the field they set. */
const OVERRIDES: [keyof RecipeFlags, string][] = [
  ['logPath', 'log_path'],
  ['outputModelId', 'output_model_id'],
  ['mlflowTrackingUri', 'mlflow_tracking_uri'],
  ['mlflowExperimentName', 'mlflow_experiment_name'],
  ['mlflowRunName', 'mlflow_run_name'],
  ['wandbProject', 'wandb_project'],
  ['wandbEntity', 'wandb_entity'],
  ['wandbApiKey', 'wandb_api_key'],
  ['wandbRunName', 'wandb_run_name'],
];

export function addRecipeCommand(program: Command): void {
  program
    .command('recipe')
    .description(
      'run a training recipe (sft, dpo, orpo, rl, async-rl, distillation, igpo) from a JSON/YAML config',
    )
    .argument('<name>', 'recipe name')
    .requiredOption('--config <file>', 'recipe config (JSON or YAML)')
    .option('--log-path <dir>', "the recipe's log directory (rerun on it to resume)")
    .option('--output-model-id <id>', 'promote the final checkpoint to this model id')
    .option('--platform', 'run trainers on the control plane (`temper up`) instead of locally')
    .option('--api-url <url>', 'control plane URL (with --platform)')
    .option('--api-key <key>', 'API key (with --platform)')
    .option('--account <id>', 'account (with --platform)')
    .option(
      '--mlflow-tracking-uri <url>',
      'log params, metrics and artifacts to this MLflow server',
    )
    .option('--mlflow-experiment-name <name>', 'MLflow experiment (default temper)')
    .option('--mlflow-run-name <name>', 'MLflow run name')
    .option('--wandb-project <name>', 'W&B project')
    .option('--wandb-entity <name>', 'W&B entity')
    .option('--wandb-api-key <key>', 'W&B API key')
    .option('--wandb-run-name <name>', 'W&B run name')
    .action(async (name: string, flags: RecipeFlags) => {
      const overrides: Record<string, unknown> = {};
      for (const [flag, field] of OVERRIDES)
        if (flags[flag] !== undefined) overrides[field] = flags[flag];
      if (flags.platform) {
        const c = await resolveConnection(flags);
        Object.assign(overrides, { base_url: c.apiUrl, api_key: c.apiKey, account: c.account });
      }
      const result = await runRecipeFile(name, flags.config, overrides);
      process.stdout.write(`${JSON.stringify(result)}\n`);
    });
}

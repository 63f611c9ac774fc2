#!/usr/bin/env node
// The `temper` command.
import { Command } from 'commander';
import { restrictFileModes } from '../util/private-files.js';
import { addBillingCommand } from './billing-command.js';
import { type ApiFlags, withApiFlags } from './commands/common.js';
import { addDeploymentCommands } from './commands/deployments.js';
import { addGenericVerbs } from './commands/generic.js';
import { addCreateCommand } from './commands/jobs.js';
import { addRecipeCommand } from './commands/recipe.js';
import { addModelVerbs, addResourceCommands } from './commands/resources.js';
import { addTrainerVerbs } from './commands/trainer.js';
import { DEMO_DEFAULTS, runDemo } from './demo.js';
import { printError } from './errors.js';
import { parseTokenList, scoreModel } from './model-score.js';
import { modelSource } from './model-score-source.js';
import { nonNegativeInt, positiveInt, positiveNumber } from './option-parsers.js';
import { addQuickstartCommand } from './quickstart-command.js';
import { addControlPlaneCommands } from './stack/control-plane-command.js';
import { addUpCommands } from './stack/up-command.js';
import { addWorkerCommand } from './stack/worker-command.js';

/**
 * `temper trainer serve` (src/trainer/cli.ts) loads the gRPC server and the engine; the API
 * verbs need neither, so it is only loaded when the command line could reach it.
 */
async function addTrainerServe(program: Command, argv: string[]): Promise<void> {
  const command = argv.slice(2).find((a) => !a.startsWith('-'));
  if (command !== undefined && command !== 'trainer' && command !== 'help') return;
  const { addTrainerCommand } = await import('../trainer/cli.js');
  addTrainerCommand(program);
}

export async function buildProgram(argv: string[] = process.argv): Promise<Command> {
  const program = new Command('temper')
    .description('temper: self-hostable fine-tuning platform')
    .showHelpAfterError();

  program
    .command('demo')
    .description('fine-tune the bundled base model on the bundled SFT dataset, then sample from it')
    .option('--model <name|dir>', 'catalog model name or HF-layout directory', DEMO_DEFAULTS.model)
    .option(
      '--dataset <name|path>',
      'catalog dataset name or JSONL file of {"messages": [...]}',
      DEMO_DEFAULTS.dataset,
    )
    .option('--steps <n>', 'optimizer steps', positiveInt, DEMO_DEFAULTS.steps)
    .option('--batch-size <n>', 'conversations per step', positiveInt, DEMO_DEFAULTS.batchSize)
    .option(
      '--learning-rate <lr>',
      'AdamW learning rate',
      positiveNumber,
      DEMO_DEFAULTS.learningRate,
    )
    .option(
      '--lora-rank <r>',
      'train a LoRA adapter of this rank (0 = full fine-tuning)',
      nonNegativeInt,
      DEMO_DEFAULTS.loraRank,
    )
    .option('--threads <n>', 'engine threads (default: all cores)', positiveInt)
    .option('--seed <n>', 'data order seed', nonNegativeInt, DEMO_DEFAULTS.seed)
    .action(async (opts) => {
      await runDemo({ ...DEMO_DEFAULTS, ...opts });
    });

  const model = program.command('model').description("models: the account's, and directories");
  withApiFlags(model.command('score'))
    .description(
      'per-target-token logprobs of a text or token list under a model: an HF-layout directory, or a model id (downloaded into a local cache)',
    )
    .requiredOption(
      '--model <id|name|dir>',
      'model id, accounts/{a}/models/{m}, or HF-layout directory (config.json + *.safetensors + tokenizer)',
    )
    .option('--text <s>', 'text to tokenize with the model tokenizer and score')
    .option('--tokens <ids>', 'comma-separated token ids', parseTokenList)
    .option('--threads <n>', 'engine threads', positiveInt)
    .action(
      async (
        opts: ApiFlags & { model: string; text?: string; tokens?: number[]; threads?: number },
      ) => {
        if ((opts.text === undefined) === (opts.tokens === undefined))
          throw new Error('give exactly one of --text or --tokens');
        const result = await scoreModel(
          await modelSource(opts.model, opts),
          { text: opts.text, tokens: opts.tokens },
          opts.threads,
        );
        if (opts.output === 'json') {
          process.stdout.write(`${JSON.stringify(result)}\n`);
          return;
        }
        const lines = result.logprobs.map(
          (lp, i) =>
            `${String(i + 1).padStart(5)}  token ${String(result.tokens[i + 1]).padStart(6)}  ${lp.toFixed(6)}\n`,
        );
        process.stdout.write(lines.join(''));
        process.stdout.write(
          `sum ${result.sum.toFixed(6)} over ${result.logprobs.length} tokens\n`,
        );
      },
    );
  addModelVerbs(model);
  await addTrainerServe(program, argv);
  addTrainerVerbs(program);
  addWorkerCommand(program);
  addUpCommands(program);
  addControlPlaneCommands(program);
  addQuickstartCommand(program);
  addCreateCommand(program);
  addGenericVerbs(program);
  addResourceCommands(program);
  addDeploymentCommands(program);
  addBillingCommand(program);
  addRecipeCommand(program);
  return program;
}

// Before anything can create a file: data, keys and credentials are the owner's only.
restrictFileModes();

buildProgram()
  .then((program) => program.parseAsync(process.argv))
  .catch((err: unknown) => {
    printError(err);
    process.exit(1);
  });

/**
 * Where the Temporal CLI (which embeds the SQLite-backed dev server) lives on this machine.
 *
 * The binary is built once per machine from the CLI's Go module by scripts/install-temporal.sh
 * (see specs/temporal.md) into `$TEMPER_TEMPORAL_BIN_DIR`, by default
 * `~/.cache/temper/bin`. `TEMPER_TEMPORAL_BIN` overrides the whole path.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The CLI release the project builds and tests against (embeds Temporal Server 1.29.1). */
export const TEMPORAL_CLI_VERSION = '1.5.1';

export const TEMPORAL_BIN_ENV = 'TEMPER_TEMPORAL_BIN';
export const TEMPORAL_BIN_DIR_ENV = 'TEMPER_TEMPORAL_BIN_DIR';

/** Raised when no usable `temporal` binary is found; the message says how to get one. */
export class TemporalBinaryNotFoundError extends Error {
  readonly code = 'TEMPORAL_BINARY_NOT_FOUND';
  override readonly name = 'TemporalBinaryNotFoundError';

  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(reason);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** The directory scripts/install-temporal.sh installs into. */
export function temporalBinDir(env: Env = process.env): string {
  const dir = env[TEMPORAL_BIN_DIR_ENV];
  return dir !== undefined && dir !== '' ? dir : join(homedir(), '.cache', 'temper', 'bin');
}

/**
 * The absolute path of the `temporal` executable: `$TEMPER_TEMPORAL_BIN` when set, else
 * `temporal` inside `temporalBinDir()`. Throws TemporalBinaryNotFoundError when that path is
 * not an executable file.
 */
export function resolveTemporalBinary(env: Env = process.env): string {
  const explicit = env[TEMPORAL_BIN_ENV];
  const fromEnv = explicit !== undefined && explicit !== '';
  const path = fromEnv ? explicit : join(temporalBinDir(env), 'temporal');
  const origin = fromEnv ? `${TEMPORAL_BIN_ENV}=${path}` : path;
  const fix =
    `Build it once with \`bash scripts/install-temporal.sh\` (Temporal CLI v${TEMPORAL_CLI_VERSION}` +
    ` from source, needs Go; installs into \${${TEMPORAL_BIN_DIR_ENV}:-~/.cache/temper/bin})` +
    `${fromEnv ? ` or unset ${TEMPORAL_BIN_ENV}` : ''}.`;

  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    throw new TemporalBinaryNotFoundError(path, `Temporal CLI not found at ${origin}. ${fix}`);
  }
  if (!isFile) {
    throw new TemporalBinaryNotFoundError(path, `${origin} is not a file. ${fix}`);
  }
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new TemporalBinaryNotFoundError(
      path,
      `Temporal CLI at ${origin} is not executable (chmod +x it). ${fix}`,
    );
  }
  return path;
}

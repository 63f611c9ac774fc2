export {
  defaultTemperCommand,
  type LocalLauncherOptions,
  LocalProcessLauncher,
  waitServing,
} from './local.js';
export type {
  Launcher,
  StopOptions,
  TrainerEndpoint,
  TrainerJobInfo,
  TrainerJobState,
  TrainerLaunchSpec,
} from './types.js';

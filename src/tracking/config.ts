/**
 * Tracking settings: the one schema for `--mlflow-*` and the seed's `--wandb-*` flags, shared
 * by recipe configs (snake_case keys in files are mapped by the recipe schemas) and the CLI.
 */
import { z } from 'zod';

export const trackingSettingsSchema = z.strictObject({
  /** MLflow tracking server (`http://host:5000`); unset = no MLflow. */
  mlflowTrackingUri: z
    .string()
    .regex(/^https?:\/\/[^\s]+$/, {
      message: 'mlflow tracking URI must be an http(s):// URL of an MLflow tracking server',
    })
    .optional(),
  mlflowExperimentName: z
    .string()
    .min(1, { message: 'mlflow experiment name must not be empty' })
    .default('temper'),
  mlflowRunName: z.string().min(1).optional(),
  wandbProject: z.string().min(1).optional(),
  wandbEntity: z.string().min(1).optional(),
  wandbApiKey: z.string().min(1).optional(),
  wandbRunName: z.string().min(1).optional(),
  /** W&B API host (default https://api.wandb.ai). */
  wandbBaseUrl: z.string().url().optional(),
});

export type TrackingSettings = z.output<typeof trackingSettingsSchema>;
export type TrackingSettingsInput = z.input<typeof trackingSettingsSchema>;

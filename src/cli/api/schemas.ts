/**
 * The response shapes the CLI relies on. Objects are loose: the CLI checks the fields it
 * reads and passes every other field through untouched, so `-o json` prints the resource
 * exactly as the server sent it.
 */
import { z } from 'zod';

export const resourceSchema = z.looseObject({ name: z.string() });
export type Resource = z.output<typeof resourceSchema>;

export const emptySchema = z.looseObject({});

export const jobProgressSchema = z.looseObject({
  step: z.number(),
  totalSteps: z.number(),
  percent: z.number().optional(),
  loss: z.number().nullable().optional(),
});

export const jobSchema = z.looseObject({
  name: z.string(),
  state: z.string(),
  status: z.looseObject({ code: z.string(), message: z.string() }).optional(),
  jobProgress: jobProgressSchema.optional(),
  outputModel: z.string().optional(),
});
export type Job = z.output<typeof jobSchema>;

export const metricsSchema = z.looseObject({
  job: z.string(),
  metrics: z.array(
    z.looseObject({
      step: z.number(),
      time: z.string(),
      values: z.record(z.string(), z.union([z.number(), z.string(), z.null()])),
    }),
  ),
});
export type MetricRows = z.output<typeof metricsSchema>['metrics'];

export const deploymentSchema = z.looseObject({
  name: z.string(),
  state: z.string(),
  baseModel: z.string(),
  gatewayUrl: z.string().nullable(),
});

/** `{<collection>: [...], nextPageToken}`; an empty page may leave the array out. */
export function pageSchema(collection: string) {
  return z.looseObject({
    [collection]: z.array(resourceSchema).optional(),
    nextPageToken: z.string().optional(),
  });
}

export const datasetValidationDetailSchema = z.looseObject({
  code: z.string().optional(),
  line: z.number().nullable().optional(),
  detail: z.string().optional(),
  message: z.string().optional(),
});

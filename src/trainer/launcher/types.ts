/**
 * How trainer pods come and go. The SDK and (later) the control plane ask a Launcher for a
 * pod serving a spec and get back a job id and a gRPC address; the local launcher runs pods
 * as processes on this machine, a cluster launcher will run them as Kubernetes pods behind the
 * same interface.
 */
import type { EngineSettingsInput } from '../engine-settings.js';

export interface TrainerLaunchSpec {
  /** Catalog model name (accounts/{a}/models/{id}) or HF-layout directory. */
  baseModel: string;
  /** The model resource a directory baseModel holds, recorded in checkpoints (PodOptions). */
  baseModelName?: string;
  /** Default LoRA rank of the pod's models; 0 = full-parameter. */
  loraRank?: number;
  loraAlpha?: number;
  /** A reference trainer: forward-only models only. */
  forwardOnly?: boolean;
  /** Engine threads per model. */
  threads?: number;
  /** Engine settings of the pod's models (src/engine engineOptionsSchema): baseDtype, recompute. */
  engine?: EngineSettingsInput;
  /** Stop after this long with no operation or heartbeat; 0 disables; default 60 min. */
  inactivityTimeoutMs?: number;
  /** Checkpoint store root URL (default: the launcher's). */
  checkpointUrl?: string;
  /** Account of the job's checkpoints (default `default`). */
  account?: string;
  /** Models the pod holds at most (default 8). */
  maxModels?: number;
  /** Use this job id instead of a generated one. */
  jobId?: string;
  displayName?: string;
  /** Pod log level (pino). */
  logLevel?: string;
}

export interface TrainerEndpoint {
  jobId: string;
  /** host:port of the pod's gRPC server. */
  address: string;
  /**
   * The pod's credential: every call presents it (`createTrainerClient(address, token)`).
   * Minted by the launcher per pod; whoever may drive the pod is handed it with the address.
   */
  token: string;
}

export type TrainerJobState = 'starting' | 'running' | 'stopped' | 'failed';

export interface TrainerJobInfo extends TrainerEndpoint {
  state: TrainerJobState;
  spec: TrainerLaunchSpec;
  createdAt: string;
  /** Why it stopped: SIGTERM, inactivity, requested, killed, exit code N. */
  reason?: string;
  /** host:port of the pod's HTTP /metrics (Prometheus, behind the token) once it serves. */
  metricsAddress?: string;
  /** Where the pod's log is (local launcher). */
  logPath?: string;
  pid?: number;
}

export interface StopOptions {
  /** How long to wait for a clean exit before killing (default 10 s). */
  graceMs?: number;
}

export interface Launcher {
  /** `local`, `kubernetes`, ... */
  readonly kind: string;
  /** The checkpoint store root the launched pods share (listing and promotion read it). */
  readonly checkpointUrl?: string;
  /** Starts a pod and resolves once it answers Health as serving. */
  launch(spec: TrainerLaunchSpec): Promise<TrainerEndpoint>;
  /** A running pod by job id (possibly started by another process); NOT_FOUND if it is gone. */
  attach(jobId: string): Promise<TrainerEndpoint>;
  /** Stops a pod (SIGTERM, then kill after the grace period); a stopped pod is a no-op. */
  stop(jobId: string, options?: StopOptions): Promise<void>;
  /** The job's current state; undefined for an unknown job. */
  get(jobId: string): Promise<TrainerJobInfo | undefined>;
  list(): Promise<TrainerJobInfo[]>;
}

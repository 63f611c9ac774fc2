/**
 * The trainer's public face for other components: a gRPC client of a pod's TrainerService,
 * the wire codecs (dense and batched tensors), the typed error and its gRPC mapping, and
 * the generated messages and enums a client builds requests from. The pod itself (server,
 * queue, engine host) stays inside.
 */

export * from '../gen/temper/trainer/v1/trainer_pb.js';
export { createTrainerClient, TRAINER_CHANNEL_OPTIONS, type TrainerClient } from './client.js';
export { parseDuration } from './duration.js';
export {
  type EngineSettings,
  type EngineSettingsInput,
  parseEngineSettings,
} from './engine-settings.js';
export { fromGrpcError, TrainerError, type TrainerErrorCode } from './errors.js';
export {
  decodeBatched,
  decodeTensor,
  encodeArray,
  encodeBatched,
  encodeInt32,
  encodeTensor,
  type WireDtype,
} from './wire.js';

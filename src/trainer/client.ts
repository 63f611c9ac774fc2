/** A promise client of one trainer pod's TrainerService (large messages allowed). */

import type * as grpc from '@grpc/grpc-js';
import { TrainerService } from '../gen/temper/trainer/v1/trainer_pb.js';
import { createClient, type PromiseClient } from '../rpc/grpc-service.js';
import { trainerCallMetadata } from './auth.js';

/** gRPC channel options of trainer servers and clients: batches can be large. */
export const TRAINER_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 1 << 30,
  'grpc.max_send_message_length': 1 << 30,
};

export type TrainerClient = PromiseClient<(typeof TrainerService)['method']>;

/** A client of the pod at `address` that presents `token` (the pod's, from its launcher). */
export function createTrainerClient(address: string, token: string): TrainerClient {
  return createClient(TrainerService, address, {
    channelOptions: TRAINER_CHANNEL_OPTIONS,
    metadata: trainerCallMetadata(token),
  });
}

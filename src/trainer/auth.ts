/**
 * Who may call a trainer pod: whoever holds its token. The launcher mints a fresh random
 * token per pod and hands it to the pod in its environment (`TEMPER_TRAINER_TOKEN`, never on
 * the command line, where `ps` shows it); clients present it as `authorization: Bearer
 * <token>` on every call. The server interceptor refuses any call without it, on every
 * service the pod serves (TrainerService and the generic health check alike), before the
 * request is read.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';

/** The environment variable a pod reads its token from. */
export const TRAINER_TOKEN_ENV = 'TEMPER_TRAINER_TOKEN';

/** Tokens shorter than this are refused at start-up: a guessable token is no token. */
export const MIN_TRAINER_TOKEN_LENGTH = 32;

/** A fresh pod token: 32 random bytes, base64url (43 characters). */
export function newTrainerToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Throws unless `token` is usable as a pod token (the pod refuses to start otherwise). */
export function checkTrainerToken(token: string | undefined): string {
  if (!token) {
    throw new Error(
      `a trainer pod needs a token: set ${TRAINER_TOKEN_ENV} (the launcher does; clients present it as "authorization: Bearer <token>")`,
    );
  }
  if (token.length < MIN_TRAINER_TOKEN_LENGTH || /[^\x21-\x7e]/.test(token)) {
    throw new Error(
      `${TRAINER_TOKEN_ENV} must be at least ${MIN_TRAINER_TOKEN_LENGTH} printable ASCII characters without spaces`,
    );
  }
  return token;
}

/** The metadata a client sends with every call to the pod holding `token`. */
export function trainerCallMetadata(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/**
 * Whether an `authorization` value presents `token`. Comparison is on SHA-256 digests in
 * constant time, so neither the token's length nor its prefix leaks through timing. Used by
 * the gRPC interceptor and the pod's /metrics alike.
 */
export function trainerBearerCheck(token: string): (authorization: string) => boolean {
  const expected = digest(`Bearer ${checkTrainerToken(token)}`);
  return (authorization) => timingSafeEqual(digest(authorization), expected);
}

/** The server interceptor of a pod holding `token` (see trainerBearerCheck). */
export function trainerAuthInterceptor(token: string): grpc.ServerInterceptor {
  const presents = trainerBearerCheck(token);
  return (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            const given = metadata.get('authorization');
            if (given.length === 1 && typeof given[0] === 'string') {
              if (presents(given[0])) {
                mdNext(metadata);
                return;
              }
              call.sendStatus({
                code: grpc.status.UNAUTHENTICATED,
                details: `${method.path}: the trainer token is wrong (present this pod's token as "authorization: Bearer <token>")`,
              });
              return;
            }
            call.sendStatus({
              code: grpc.status.UNAUTHENTICATED,
              details: `${method.path}: this trainer pod requires its token ("authorization: Bearer <token>" metadata); none was sent`,
            });
          },
        });
      },
    });
}

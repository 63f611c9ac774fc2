export * from './gateway/ledger.js';
export * from './gateway/server.js';
export * from './onnx/index.js';
export * from './registry.js';
export * from './replica/launcher.js';
export type * from './replica/runtime.js';
export { MAX_REPLICA_THREADS, replicaSettings } from './replica/settings.js';
export * from './replica/snapshots.js';

export * from './config.js';
export * from './dtype.js';
export * from './model.js';
export type { Pooling } from './native.js';
export { listWeightFiles } from './weights-files.js';

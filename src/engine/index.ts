export * from './config.js';
export * from './dtype.js';
export { type InitOptions, initialWeights, standardNormal } from './init.js';
export * from './model.js';
export type { Pooling } from './native.js';
export { nativeEngine } from './native.js';
export { type EngineOps, engineOps } from './ops.js';
export { baseTensorShapes } from './tensors.js';
export { listWeightFiles } from './weights-files.js';

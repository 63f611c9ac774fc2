export * from './export.js';
export * from './proto.js';
export * from './session.js';

export * from './dtype.js';
export * from './shape.js';
export * from './rng.js';
export * from './arena.js';

/** The js backend: the specification every other backend is checked against. Generic over f32/f64. */
import type { Kernels } from '../types.js';
import { matmulForward, matmulBackward } from './matmul.js';
import { layerNormForward, layerNormBackward, rmsNormForward, rmsNormBackward } from './norm.js';
import { geluForward, geluBackward, swigluForward, swigluBackward } from './activation.js';
import { embeddingForward, embeddingBackward } from './embedding.js';
import { ropeForward, ropeBackward } from './rope.js';
import { crossEntropyForward, crossEntropyBackward } from './crossentropy.js';
import { adamwStep, sumSquares, scale, axpy } from './optim.js';
import { attnForward, attnBackward, attnDelta, attnMerge } from './attention.js';

export const jsKernels: Kernels = {
  name: 'js',
  matmulForward,
  matmulBackward,
  layerNormForward,
  layerNormBackward,
  rmsNormForward,
  rmsNormBackward,
  geluForward,
  geluBackward,
  swigluForward,
  swigluBackward,
  embeddingForward,
  embeddingBackward,
  ropeForward,
  ropeBackward,
  crossEntropyForward,
  crossEntropyBackward,
  adamwStep,
  sumSquares,
  scale,
  axpy,
  attnForward,
  attnBackward,
  attnDelta,
  attnMerge,
};

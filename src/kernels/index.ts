/** Backend registry: js always; native when its addon is built and loads on this machine. */
import type { Kernels } from './types.js';
import { jsKernels } from './js/index.js';
import { loadNativeKernels } from './native/index.js';

export type { Kernels } from './types.js';
export { jsKernels } from './js/index.js';

export function availableBackends(): Kernels[] {
  const n = loadNativeKernels();
  return 'kernels' in n ? [jsKernels, n.kernels] : [jsKernels];
}

/** 'auto' prefers native and falls back to js with a one-line warning; 'native' throws if it cannot load. */
export function selectKernels(name: 'js' | 'native' | 'auto'): { kernels: Kernels; warning?: string } {
  if (name === 'js') return { kernels: jsKernels };
  const n = loadNativeKernels();
  if ('kernels' in n) return { kernels: n.kernels };
  if (name === 'native') throw new Error(`--backend native: ${n.error}`);
  return { kernels: jsKernels, warning: `using the js kernels: ${n.error}` };
}

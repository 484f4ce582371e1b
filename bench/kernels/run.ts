/** node dist/bench/kernels/run.js [--smoke] [--threads N] — runs runKernelBench (until the CLI wires it). */
import { runKernelBench } from './index.js';

const argv = process.argv.slice(2);
const ti = argv.indexOf('--threads');
runKernelBench({ smoke: argv.includes('--smoke'), threads: ti >= 0 ? Number(argv[ti + 1]) : undefined });

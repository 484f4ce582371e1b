#!/usr/bin/env node
/** The `seqpar` command. */
import { runTrainCommand } from './train.js';

const HELP = `Usage: seqpar <command> [options]

Commands
  train            train a byte-level GPT (see seqpar train --help)
  bench kernels    kernel GFLOP/s vs this machine's measured FMA peak
  bench comm       collective bandwidth vs memcpy
  bench sp         sequence-parallel schemes: step time, speedup, memory, comm bytes
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(HELP);
    return cmd ? 0 : 2;
  }
  if (cmd === 'train') return runTrainCommand(rest);
  if (cmd === 'bench') {
    const { runBenchCommand } = await import('./bench.js');
    return runBenchCommand(rest);
  }
  process.stderr.write(`seqpar: unknown command '${cmd}' (commands: train, bench)\n`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`seqpar: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);

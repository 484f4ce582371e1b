/**
 * `seqpar bench <theme> [--smoke] [...]`: runs a benchmark suite. Every case checks its result
 * before timing it; full runs append JSON lines under bench/results/ (smoke runs write nothing).
 */
import { UsageError } from './args.js';

const HELP = `Usage: seqpar bench <theme> [--smoke]

Themes
  kernels [--threads N] [--only sgemm|attention|step]
                          native SGEMM and attention vs this machine's FMA peak (measured in the
                          same run), plus the reference model's training step at N = 1K, 4K, 16K
                          on 1 core and with N intra-op threads (default 2)
  step [--backend js|native] [--n 1024,4096]
                          the reference model's training step on one rank
  comm                    collective bandwidth on 2 worker threads vs memcpy, 1/16/64 MB; the
                          Ulysses head exchange, pack + allToAll vs allToAllRows
  sp [--n 4096,16384] [--p 2,4] [--schemes ulysses,zigzag,...] [--reps 2] [--warmup 1]
                          training step of the reference model on one sequence split over P ranks,
                          per scheme, vs one rank on one core: speedup, memory, comm bytes
                          (--warmup 0 times the first step: for N = 64K, where a step takes minutes;
                          --baseline each re-times the one-rank step before every scheme;
                          --rounds R alternates one-rank and P-rank runs R times per scheme and
                          reports the median ratio; --ceiling on|off, on by default with
                          rounds, also times P independent one-rank steps at once in each round:
                          the host's ceiling for the speedup right now; --window W trains every
                          case, the one-rank step too, with sliding-window attention over W tokens)
                          --no-shared-attention: Ulysses exchanges heads (default: its kernels run on
                          every member's tensors in place)
  sp-attn [--n 4096,16384] [--p 2,4]
                          the attention layer alone (forward + backward) per scheme
`;

function flagValue(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined) throw new UsageError(`${name}: expects a value`);
  return v;
}

function intList(argv: string[], name: string): number[] | undefined {
  const v = flagValue(argv, name);
  if (v === undefined) return undefined;
  const xs = v.split(',').map(Number);
  if (xs.some((x) => !Number.isInteger(x) || x <= 0)) throw new UsageError(`${name} ${v}: must be a comma-separated list of positive integers`);
  return xs;
}

/** Flags that take no value. */
const SWITCHES = new Set(['--smoke', '--help', '--no-shared-attention']);
const KNOWN = new Set([...SWITCHES, '--threads', '--backend', '--n', '--p', '--schemes', '--reps', '--warmup', '--baseline', '--rounds', '--ceiling', '--window', '--only']);

export async function runBenchCommand(argv: string[]): Promise<number> {
  const [theme, ...rest] = argv;
  try {
    if (!theme || theme === '--help') {
      process.stdout.write(HELP);
      return theme ? 0 : 2;
    }
    for (let i = 0; i < rest.length; i++) {
      const a = rest[i]!;
      if (!KNOWN.has(a)) throw new UsageError(`unknown option ${a} (see seqpar bench --help)`);
      if (!SWITCHES.has(a)) i++;
    }
    // `seqpar bench sp --help` prints the usage; it must never start a (minutes-long) run.
    if (rest.includes('--help')) {
      process.stdout.write(HELP);
      return 0;
    }
    const smoke = rest.includes('--smoke');
    const log = (s: string) => process.stderr.write(s + '\n');
    switch (theme) {
      case 'kernels': {
        const threads = Number(flagValue(rest, '--threads') ?? 2);
        if (!Number.isInteger(threads) || threads < 1) throw new UsageError(`--threads ${threads}: must be a positive integer`);
        const only = flagValue(rest, '--only');
        if (only !== undefined && only !== 'sgemm' && only !== 'attention' && only !== 'step') throw new UsageError(`--only ${only}: must be sgemm, attention or step`);
        const { runKernelBench } = await import('../../bench/kernels/index.js');
        if (only !== 'step') await runKernelBench({ smoke, threads, log, only });
        if (only === 'sgemm' || only === 'attention') return 0;
        const { runTrainStepBench } = await import('../../bench/e2e/train-step.js');
        const { selectKernels } = await import('../kernels/index.js');
        const { setNativeThreads } = await import('../kernels/native/index.js');
        const sel = selectKernels('auto');
        const lengths = [1024, 4096, 16384];
        for (const t of threads > 1 ? [1, threads] : [1]) {
          setNativeThreads(t);
          const rows = await runTrainStepBench({ kernels: sel.kernels, lengths, smoke, threads: t, reps: 2 });
          for (const r of rows) log(`train step N=${r.N} threads=${t}: ${(r.medianSec as number).toFixed(3)} s (${(r.gflops as number).toFixed(1)} GFLOP/s, ${sel.kernels.name})`);
        }
        setNativeThreads(1);
        return 0;
      }
      case 'step': {
        const backend = flagValue(rest, '--backend') ?? 'auto';
        if (!['auto', 'js', 'native'].includes(backend)) throw new UsageError(`--backend ${backend}: must be one of auto|js|native`);
        const { runTrainStepBench } = await import('../../bench/e2e/train-step.js');
        const { selectKernels } = await import('../kernels/index.js');
        const sel = selectKernels(backend as 'auto');
        const rows = await runTrainStepBench({ kernels: sel.kernels, lengths: intList(rest, '--n') ?? [1024, 4096], smoke, reps: 2 });
        for (const r of rows) log(`train step N=${r.N}: ${(r.medianSec as number).toFixed(3)} s (${(r.gflops as number).toFixed(2)} GFLOP/s, ${sel.kernels.name})`);
        return 0;
      }
      case 'comm': {
        const { runCommBench } = await import('../../bench/comm/collectives.js');
        const res = await runCommBench(smoke ? { sizesMB: [1], warmup: 0, iters: 1, outFile: null } : {});
        for (const r of res) log(`${r.op.padEnd(14)} ${r.buffers.padEnd(8)} ${(r.bytes / 2 ** 20).toFixed(0).padStart(3)} MB  ${r.algGBps.toFixed(2).padStart(6)} GB/s  memcpy ${r.memcpyGBps.toFixed(2).padStart(6)} GB/s  ratio ${r.ratioToMemcpy.toFixed(2)}  cross-core copy ${r.crossCoreCopyGBps.toFixed(2).padStart(6)} GB/s  ratio ${r.ratioToCrossCoreCopy.toFixed(2)}`);
        const { runHeadExchangeBench } = await import('../../bench/comm/head-exchange.js');
        await runHeadExchangeBench({ smoke, log });
        return 0;
      }
      case 'sp': {
        const { runSpTrainBench, SP_BENCH_SCHEMES } = await import('../../bench/e2e/sp-train.js');
        const names = flagValue(rest, '--schemes')?.split(',');
        const known = new Set<string>(SP_BENCH_SCHEMES.map((x) => x.scheme));
        const bad = names?.find((x) => !known.has(x));
        if (bad !== undefined) throw new UsageError(`--schemes: unknown scheme '${bad}' (one of ${[...known].join(', ')})`);
        const schemes = names ? SP_BENCH_SCHEMES.filter((x) => names.includes(x.scheme)) : undefined;
        const warmup = flagValue(rest, '--warmup');
        if (warmup !== undefined && warmup !== '0' && warmup !== '1') throw new UsageError(`--warmup ${warmup}: must be 0 or 1`);
        const baseline = flagValue(rest, '--baseline');
        if (baseline !== undefined && baseline !== 'once' && baseline !== 'each') throw new UsageError(`--baseline ${baseline}: must be once or each`);
        const rounds = intList(rest, '--rounds')?.[0];
        const ceiling = flagValue(rest, '--ceiling');
        if (ceiling !== undefined && ceiling !== 'on' && ceiling !== 'off') throw new UsageError(`--ceiling ${ceiling}: must be on or off`);
        const window = intList(rest, '--window')?.[0];
        await runSpTrainBench({ smoke, Ns: intList(rest, '--n'), Ps: intList(rest, '--p'), schemes, reps: intList(rest, '--reps')?.[0], warmup: warmup === undefined ? undefined : Number(warmup), baseline, rounds, ceiling: ceiling === undefined ? undefined : ceiling === 'on', window, exchange: rest.includes('--no-shared-attention'), log });
        return 0;
      }
      case 'sp-attn': {
        const { runSpBench } = await import('../../bench/strategies/sp.js');
        await runSpBench(smoke ? { Ns: [64], Ps: [2], reps: 1, warmup: 0, write: false, log } : { Ns: intList(rest, '--n'), Ps: intList(rest, '--p'), log });
        return 0;
      }
      default:
        throw new UsageError(`unknown theme '${theme}' (themes: kernels, step, comm, sp, sp-attn)`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`seqpar bench: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

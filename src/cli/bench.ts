/** `seqpar bench <theme>`: runs a benchmark suite (each appends JSON lines under bench/results/). */
export async function runBenchCommand(argv: string[]): Promise<number> {
  const [theme] = argv;
  process.stderr.write(`seqpar bench: unknown theme '${theme ?? ''}' (themes: kernels, comm, sp)\n`);
  return 2;
}

#!/usr/bin/env bash
# A/B of the native kernels against a base revision, in one process (ab.cc):
#   bench/kernels/ab/ab.sh BASE_REV [--smoke]
# Builds BASE_REV's native/{gemm,attn_fwd,attn_bwd}.cc and the working tree's with g++ for this
# CPU's widest ISA (AVX-512 or AVX2+FMA), runs the alternating pairs, and appends one JSON line per
# case (median new/old time over the pairs, both builds' agreement) to
# bench/results/kernels-ab_<host>_<yyyymmdd>.jsonl; --smoke runs one tiny pair per kernel and
# writes nothing.
set -euo pipefail
base=${1:?usage: ab.sh BASE_REV [--smoke]}
smoke=${2:-}
root=$(git rev-parse --show-toplevel)
baseSha=$(git -C "$root" rev-parse --verify "$base^{commit}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/old"
for f in $(git -C "$root" ls-tree --name-only "$baseSha" native/); do git -C "$root" show "$baseSha:$f" > "$work/old/$(basename "$f")"; done
if grep -q avx512f /proc/cpuinfo && grep -q avx512dq /proc/cpuinfo; then
  flags="-mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma -mprefer-vector-width=512"; ns=sp_avx512
elif grep -q avx2 /proc/cpuinfo && grep -q fma /proc/cpuinfo; then
  flags="-mavx2 -mfma"; ns=sp_avx2
else
  echo "ab.sh: needs AVX2+FMA or AVX-512" >&2; exit 2
fi
cxx="g++ -O3 -std=c++17 -fno-math-errno $flags"
for k in gemm attn_fwd attn_bwd; do
  $cxx -I"$work/old" -D$ns=sp_old -c "$work/old/$k.cc" -o "$work/old_$k.o" &
  $cxx -I"$root/native" -c "$root/native/$k.cc" -o "$work/new_$k.o" &
done
wait
$cxx -I"$root/native" -DAB_NS=$ns "$root/bench/kernels/ab/ab.cc" "$work"/old_*.o "$work"/new_*.o -o "$work/ab"
if [ "$smoke" = "--smoke" ]; then "$work/ab" --smoke; exit 0; fi
host=$(hostname | tr -c 'A-Za-z0-9_\n-' '_')
out="$root/bench/results/kernels-ab_${host}_$(date -u +%Y%m%d).jsonl"
head=$(git -C "$root" rev-parse HEAD)$(git -C "$root" diff --quiet -- native || echo "+dirty")
time=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/"//g')
"$work/ab" | while IFS= read -r line; do
  echo "$line"
  echo "{\"time\":\"$time\",\"host\":\"$host\",\"cpu\":\"$cpu\",\"isa\":\"$ns\",\"base\":\"$baseSha\",\"head\":\"$head\",${line#\{}" >> "$out"
done
echo "results: $out" >&2

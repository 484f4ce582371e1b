#!/usr/bin/env bash
# One-process A/B of the model code of a base revision against the working tree's (ab-step.ts),
# both on the working tree's kernels:
#   bench/e2e/ab-step.sh BASE_REV [N] [PAIRS] [--smoke]
# Extracts BASE_REV into a temporary directory, compiles it with this tree's TypeScript, runs the
# alternating steps from this tree's build (dist/, so run `npx tsc -p .` first), and appends the
# JSON line to bench/results/train-step-ab_<host>_<yyyymmdd>.jsonl; --smoke writes nothing.
set -euo pipefail
base=${1:?usage: ab-step.sh BASE_REV [N] [PAIRS] [--smoke]}
N=${2:-4096}
pairs=${3:-10}
smoke=${4:-}
root=$(git rev-parse --show-toplevel)
baseSha=$(git -C "$root" rev-parse --verify "$base^{commit}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$root" archive "$baseSha" | tar -x -C "$work"
ln -s "$root/node_modules" "$work/node_modules"
(cd "$work" && "$root/node_modules/.bin/tsc" -p . --outDir "$work/dist")
line=$(node "$root/dist/bench/e2e/ab-step.js" "$work/dist" "$N" "$pairs")
echo "$line"
if [ "$smoke" = "--smoke" ]; then exit 0; fi
host=$(hostname | tr -c 'A-Za-z0-9_\n-' '_')
out="$root/bench/results/train-step-ab_${host}_$(date -u +%Y%m%d).jsonl"
head=$(git -C "$root" rev-parse HEAD)$(git -C "$root" diff --quiet -- src || echo "+dirty")
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/"//g')
echo "{\"time\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"host\":\"$host\",\"cpu\":\"$cpu\",\"base\":\"$baseSha\",\"head\":\"$head\",${line#\{}" >> "$out"
echo "results: $out" >&2

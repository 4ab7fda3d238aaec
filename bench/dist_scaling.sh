#!/usr/bin/env bash
# Data-parallel scaling on this machine (kiln::dist, bench/README.md "Data-parallel scaling"): kiln_dist_scaling at
# per-rank batches 64 and 256, one thread per process: one process without DataParallel (the baseline), 1 rank and
# 2 ranks of DataParallel under mpirun. Each configuration runs RUNS times (default 3), interleaved; the median is
# kept. Each run first waits while $KILN_BENCH_QUIET_FILE (default /tmp/kiln-quiet) exists: another benchmark
# holds the machine.
#   bench/dist_scaling.sh [BUILD]        # BUILD: a build folder (default build/bench-dist, configured if new)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/bench-dist}
runs=${RUNS:-3}
steps=${STEPS:-300}
quiet_file=${KILN_BENCH_QUIET_FILE:-/tmp/kiln-quiet}
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_BENCH=ON -DKILN_BUILD_TESTS=OFF \
    -DKILN_BUILD_SAMPLES=OFF >/dev/null
fi
cmake --build "$build" --target kiln_dist_scaling -j"${KILN_BENCH_JOBS:-2}"
program=$build/bench/kiln_dist_scaling
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # CI and containers run as root
lscpu | grep -E '^(Model name|CPU family|Model):' | tr -s ' '

measure() {  # measure NAME COMMAND...: one run, its line kept in $results
  while [[ -e $quiet_file ]]; do sleep 5; done
  local line
  line=$("${@:2}" | tail -1)
  echo "$line"
  echo "$1 $(sed -E 's/.*: ([0-9]+) samples\/s.*/\1/' <<<"$line")" >>"$results"
}
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for batch in 64 256; do
  for ((run = 0; run < runs; ++run)); do
    measure "plain-$batch" "$program" --batch "$batch" --steps "$steps" --plain
    measure "1rank-$batch" mpirun -np 1 "$program" --batch "$batch" --steps "$steps"
    measure "2ranks-$batch" mpirun -np 2 --bind-to core --map-by core "$program" --batch "$batch" --steps "$steps"
  done
done
median() { grep "^$1 " "$results" | awk '{print $2}' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
echo
echo "| per-rank batch | 1 process (samples/s) | 1 rank | 2 ranks | 2 ranks / 1 process |"
echo "|---|---|---|---|---|"
for batch in 64 256; do
  plain=$(median "plain-$batch") one=$(median "1rank-$batch") two=$(median "2ranks-$batch")
  echo "| $batch | $plain | $one | $two | $(awk -v a="$two" -v b="$plain" 'BEGIN {printf "%.2fx", a / b}') |"
done

#!/usr/bin/env bash
# Compile time of one translation unit: compiles SOURCE N times with COMPILER and prints the minimum wall time
# (and user + system CPU time, less disturbed by other jobs on the machine) and the minimum peak RSS (GNU
# time's "Maximum resident set size") over the runs. Checks out nothing and builds in a temporary folder; run
# it on a quiet machine, one compile at a time.
#
#   bench/hana_compile_time.sh [-n RUNS] [-O FLAGS] [-s] [-N] [-l LOG] COMPILER SOURCE [EXTRA_FLAGS...]
#     -n RUNS   compiles (default 3)
#     -O FLAGS  optimisation flags (default -O2)
#     -s        -fsyntax-only instead of -c (for compile-fail cases)
#     -N        no -march=native (tests/compile_fail/check.cmake compiles without it; clang 19 on this
#               machine's CPU prints six "invalid feature combination" warnings with it)
#     -l LOG    keep the compiler's output (the diagnostics) of the last run in LOG
#   e.g. bench/hana_compile_time.sh g++-12 samples/train_fashion_mnist.cpp
#        bench/hana_compile_time.sh clang++-19 tests/runtime/test_golden_networks.cpp -DKILN_GOLDEN_DIR='"x"'
#
# To compare two versions (e.g. a prototype branch and its base), export each with
# `git archive REV | tar -x -C DIR` into folders whose paths have the same length, and alternate the runs.
#
# Output, one line: COMPILER SOURCE min_wall_s=... min_cpu_s=... min_peak_rss_mib=... runs=N status=(last run's);
# exits 1 when a -c compile fails (with -s a failing compile is the point and exits 0).
# Include dirs are Kiln's (CMakeLists.txt) plus the source's own folder; flags -std=c++20 -march=native; links
# nothing.
# Set KILN_EXTRA_INCLUDES (space-separated -I flags) to add more, e.g. a Boost prefix.
set -euo pipefail

runs=3 opt=-O2 mode=-c log="" arch=-march=native
while getopts "n:O:sNl:" flag; do
  case $flag in
    n) runs=$OPTARG ;;
    O) opt=$OPTARG ;;
    s) mode=-fsyntax-only ;;
    N) arch="" ;;
    l) log=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -ge 2 ]] || { sed -n '2,23p' "$0"; exit 2; }
compiler=$1 source=$2
shift 2

root=$(cd "$(dirname "$0")/.." && pwd)
[[ -x /usr/bin/time ]] || { echo "needs GNU time (/usr/bin/time, Debian package 'time')" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

includes=(-I"$root/dsl/include" -I"$root/codegen/et/include" -I"$root/codegen/ir/include"
          -I"$root/runtime/include" -I"$root/api/include" -I"$(dirname "$source")")
# shellcheck disable=SC2206
extra_includes=(${KILN_EXTRA_INCLUDES:-})

best_wall="" best_rss="" best_cpu="" status=0
for ((r = 0; r < runs; ++r)); do
  status=0
  /usr/bin/time -f "%e %M %U %S" -o "$tmp/time" "$compiler" -std=c++20 ${arch:+"$arch"} "$opt" "$mode" \
    "${includes[@]}" "${extra_includes[@]}" "$@" "$source" -o "$tmp/out.o" >"$tmp/log" 2>&1 || status=$?
  read -r wall rss user sys < <(tail -n 1 "$tmp/time")  # after "Command exited with non-zero status" when it failed
  if [[ -z $best_wall ]] || awk "BEGIN{exit !($wall < $best_wall)}"; then best_wall=$wall; fi
  if [[ -z $best_rss || $rss -lt $best_rss ]]; then best_rss=$rss; fi
  cpu=$(awk "BEGIN{print $user + $sys}")
  if [[ -z $best_cpu ]] || awk "BEGIN{exit !($cpu < $best_cpu)}"; then best_cpu=$cpu; fi
done
[[ -z $log ]] || cp "$tmp/log" "$log"
printf '%s %s min_wall_s=%s min_cpu_s=%s min_peak_rss_mib=%d runs=%d status=%d\n' "$(basename "$compiler")" \
  "$source" "$best_wall" "$best_cpu" $((best_rss / 1024)) "$runs" "$status"
if [[ $status -ne 0 && $mode != -fsyntax-only ]]; then  # a failed -c build measures nothing useful
  head -20 "$tmp/log" >&2
  exit 1
fi

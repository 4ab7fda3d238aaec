#!/usr/bin/env bash
# Builds the benchmarks and runs Kiln against libtorch (kiln_vs_torch) and Python PyTorch (bench_pytorch.py),
# on 1 and 2 threads, each thread count in its own processes with OpenBLAS pinned to it, the JIT's compile
# times, tiny's batch 1 against a hand-written floor (kiln_batch1_floor) and what two threads cost a small call
# (kiln_pool_overhead); then prints one table of medians
# and which of issue 15's goals this run meets (bench/goals.py). bench/README.md reports one run.
#
#   bench/run.sh            # the full run (20-25 minutes on a 2-core machine: PyTorch's side runs once per
#                           # OpenBLAS kernel set, about 4 minutes each)
#   bench/run.sh --quick    # 1 repetition, short timings, 2 kernel sets: for checking that everything works
#
# Environment: KILN_BENCH_BUILD (build folder, default build-bench), KILN_BENCH_REPETITIONS (default 5),
# KILN_BENCH_JOBS (parallel compile jobs, default 2),
# KILN_BENCH_WAIT_QUIET (seconds, default 0): before each benchmark process, and before each measurement in it,
# wait up to this long for the machine to be quiet (other processes using under 0.05 cores over 3 s, 0.1 over
# 0.3 s). On a 2-core machine a compile running beside the benchmarks ruins the 2-thread numbers (libgomp's
# and OpenBLAS's workers spin). Either way each measurement records what other processes used meanwhile, and
# the tables flag the rows where that was over 0.1 cores.
# Results (console text and JSON) go to $KILN_BENCH_BUILD/bench-results/.
#
# PyTorch is configured for its best here (see bench/README.md):
#  - libtorch's matmuls go to the BLAS behind libblas.so.3. Debian's default is the reference BLAS (~40x slower
#    than OpenBLAS at these sizes). Unless libblas.so.3 is OpenBLAS's OpenMP build, this script uses Debian's
#    libopenblas0-openmp package unpacked into the build folder (apt-get download; nothing is installed), via
#    LD_LIBRARY_PATH.
#  - OpenBLAS's kernel set: OpenBLAS's own detection can pick a slower set than the CPU runs (on a CPU model it
#    does not know), so libtorch (kiln_vs_torch's torch variant) and Python PyTorch run under each kernel set
#    that makes sense here (OPENBLAS_CORETYPE unset, SkylakeX, Cooperlake, SapphireRapids, Zen, Haswell: those
#    that load distinct kernels, as OpenBLAS reports; --quick: auto and one other), each in its own processes,
#    and the table keeps the fastest per case and names it. Kiln's side (and the oneDNN vendor ceiling) runs
#    once, in the process with OpenBLAS's own choice. OPENBLAS_NUM_THREADS = the benchmark's thread count.
#  - glibc malloc's mmap threshold raised (64 MiB) and trimming made rare, so that large temporaries are reused
#    rather than mapped and page-faulted on every call.
set -euo pipefail
cd "$(dirname "$0")/.."
{ # (read whole before it runs, so that editing this file during a run does not change the run)

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
build=${KILN_BENCH_BUILD:-build-bench}
reps=${KILN_BENCH_REPETITIONS:-5}
out=$build/bench-results
python=/usr/bin/python3  # Debian's, which has python3-torch
source bench/common.sh  # configure_bench_build, find_openblas, choose_openblas_cores, bench_env(_core), print_cpu

# Every number below comes from this CPU.
echo "== machine"
print_cpu

echo "== build ($build)"
install_bench_packages
configure_bench_build "$build"
cmake --build "$build" -j"${KILN_BENCH_JOBS:-2}" --target kiln_fma_peak kiln_vs_torch kiln_jit_compile_time \
  kiln_batch1_floor kiln_pool_overhead
mkdir -p "$out"

# ---- OpenBLAS for libtorch -------------------------------------------------------------------------------------
find_openblas "$build" ||
  echo "!! could not fetch OpenBLAS: libtorch and PyTorch will run on the reference BLAS (far slower)" >&2
choose_openblas_cores $((quick ? 2 : ${#openblas_core_requests[@]}))

# Cores that other processes kept busy over the next $1 seconds (from /proc/stat; run while we are idle).
others_busy() {
  local a b
  a=$(awk '/^cpu /{ print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
  sleep "$1"
  b=$(awk '/^cpu /{ print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
  awk -v a="$a" -v b="$b" -v s="$1" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.2f", (y[1] - x[1]) / hz / s }'
}
wait_quiet() {
  local waited=0 busy
  busy=$(others_busy 3)
  while awk -v b="$busy" 'BEGIN { exit !(b > 0.05) }' && ((waited < ${KILN_BENCH_WAIT_QUIET:-0})); do
    ((waited % 60 == 0)) && echo "   (others use $busy cores: waiting for a quiet machine)"
    sleep 7
    waited=$((waited + 10))
    busy=$(others_busy 3)
  done
  echo "   other processes used $busy cores over the 3 s before this"
  awk -v b="$busy" 'BEGIN { exit !(b > 0.05) }' && echo "!! the machine is busy: these timings will be noisy" >&2
  return 0
}

# ---- the software and the load ----------------------------------------------------------------------------------
echo "$(g++ --version | head -1); torch $($python -c 'import torch; print(torch.__version__)')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$build"/bench/kiln_fma_peak

# ---- Kiln and libtorch -----------------------------------------------------------------------------------------
# Repetitions interleaved in random order: a host whose speed drifts for seconds at a time (seen on Zen 3 under
# KVM: the same loop 30% slower for a few seconds, with nothing else running in the guest) then slows every variant
# alike instead of all the repetitions of whichever ran then (2 threads, MLP-S at 256: Kiln 1209 us against
# libtorch's 946 in one run, 858 against 1022 interleaved).
gb_args=(--benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true
  --benchmark_display_aggregates_only=true --benchmark_color=false)
py_args=(--repetitions "$reps")
if ((quick)); then
  gb_args=(--benchmark_repetitions=1 --benchmark_min_time=0.02 --benchmark_color=false)
  py_args=(--repetitions 1 --min-time 0.02)
fi
# Everything once under OpenBLAS's own kernel choice; then libtorch alone under each other kernel set.
kiln_json=()
for t in 1 2; do
  for i in "${!blas_cores[@]}"; do
    core=${blas_cores[i]} filter="_t$t/" name=kiln_vs_torch_t$t what="every variant"
    [[ $core == auto ]] || { filter="_t$t/torch/" name=kiln_vs_torch_t${t}_$core what="libtorch only"; }
    echo "== kiln_vs_torch, $t thread(s), OpenBLAS ${blas_core_labels[i]}: $what"
    wait_quiet
    bench_env_core "$core" "$t" "$build"/bench/kiln_vs_torch --benchmark_filter="$filter" "${gb_args[@]}" \
      --benchmark_out="$out/$name.json" --benchmark_out_format=json | tee "$out/$name.txt"
    kiln_json+=("$out/$name.json")
  done
done

# ---- the MLIR backend's compile times ---------------------------------------------------------------------------
echo "== kiln_jit_compile_time"
"$build"/bench/kiln_jit_compile_time $((quick ? 2 : 9)) | tee "$out/jit_compile_time.txt"

# ---- batch 1 against a hand-written floor -------------------------------------------------------------------------
echo "== kiln_batch1_floor"
wait_quiet
"$build"/bench/kiln_batch1_floor | tee "$out/batch1_floor.txt"

# ---- what two threads cost a small call -------------------------------------------------------------------------
echo "== kiln_pool_overhead"
wait_quiet
"$build"/bench/kiln_pool_overhead | tee "$out/pool_overhead.txt"

# ---- Python PyTorch --------------------------------------------------------------------------------------------
py_json=()
for t in 1 2; do
  for i in "${!blas_cores[@]}"; do
    core=${blas_cores[i]} name=pytorch_t$t
    [[ $core == auto ]] || name=pytorch_t${t}_$core
    echo "== bench_pytorch.py, $t thread(s), OpenBLAS ${blas_core_labels[i]}"
    wait_quiet
    bench_env_core "$core" "$t" $python bench/bench_pytorch.py --threads "$t" "${py_args[@]}" --json "$out/$name.json" |
      tee "$out/$name.txt"
    py_json+=("$out/$name.json")
  done
done

# ---- one table --------------------------------------------------------------------------------------------------
echo
echo "== medians (us); x: how many times faster Kiln is (best torch: the fastest of libtorch, eager and jit, each"
echo "   under its fastest OpenBLAS kernel set; oneDNN: the vendor ceiling)"
$python bench/bench_pytorch.py --combine "${kiln_json[@]}" --json "${py_json[@]}" | tee "$out/summary.md"
# ---- issue 15's goals, read off the files above ----------------------------------------------------------------
$python bench/goals.py --kiln "${kiln_json[@]}" --pytorch "${py_json[@]}" --compile-time "$out/jit_compile_time.txt" \
  --batch1-floor "$out/batch1_floor.txt" --pool-overhead "$out/pool_overhead.txt" |
  tee "$out/goals.md"
exit
}

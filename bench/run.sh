#!/usr/bin/env bash
# Builds the benchmarks and runs Kiln against libtorch (kiln_vs_torch) and Python PyTorch (bench_pytorch.py),
# on 1 and 2 threads, each thread count in its own processes with OpenBLAS pinned to it; then prints one table
# of medians. bench/README.md reports one run.
#
#   bench/run.sh            # the full run (about 10 minutes on a 2-core machine)
#   bench/run.sh --quick    # 1 repetition, short timings: for checking that everything works
#
# Environment: KILN_BENCH_BUILD (build folder, default build-bench), KILN_BENCH_REPETITIONS (default 5),
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
#  - OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (a forced Haswell core type would mean AVX2 kernels; unset,
#    OpenBLAS picks its AVX-512 kernels here), OPENBLAS_NUM_THREADS = the benchmark's thread count.
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
# libopenblas0-openmp, not Debian's default -pthread: libtorch runs its own loops on OpenMP (libgomp), and
# OpenBLAS's own pthreads and libgomp's spinning workers then fight over the cores (2 threads, MLP-S batch 256:
# 12 ms instead of 0.37 ms). The OpenMP build shares libgomp's threads. See bench/README.md.
openblas_variant=openmp

echo "== build ($build)"
# A new build folder gets only what the benchmarks need; an existing one (a developer's) keeps its tests and
# samples, and only gains the benchmarks.
if [[ -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -DKILN_BUILD_BENCH=ON >/dev/null
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt")
  [[ $build_type == Release ]] || echo "!! $build is a '$build_type' build, not Release: these are not Release timings" >&2
else
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_BENCH=ON -DKILN_BUILD_TESTS=OFF \
    -DKILN_BUILD_SAMPLES=OFF >/dev/null
fi
cmake --build "$build" -j2 --target kiln_fma_peak kiln_vs_torch kiln_jit_compile_time
mkdir -p "$out"

# ---- OpenBLAS for libtorch -------------------------------------------------------------------------------------
libdir=/usr/lib/x86_64-linux-gnu
blas_path=""
if readlink -f "$libdir/libblas.so.3" | grep -q "openblas-$openblas_variant"; then
  echo "== BLAS: the system's libblas.so.3 is OpenBLAS ($(readlink -f "$libdir/libblas.so.3"))"
else
  local_dir=$build/openblas
  blas_path=$(mkdir -p "$local_dir" && cd "$local_dir" && pwd)$libdir/openblas-$openblas_variant  # $build may be absolute
  if [[ ! -e $blas_path/libblas.so.3 ]]; then
    echo "== BLAS: libblas.so.3 is $(readlink -f "$libdir/libblas.so.3"), not OpenBLAS's OpenMP build: fetching libopenblas0-$openblas_variant"
    mkdir -p "$local_dir"
    if (cd "$local_dir" && apt-get download "libopenblas0-$openblas_variant" 2>/dev/null) &&
       dpkg -x "$local_dir"/libopenblas0-"$openblas_variant"_*.deb "$local_dir"; then :; else
      echo "!! could not fetch OpenBLAS: libtorch and PyTorch will run on the reference BLAS (far slower)" >&2
      blas_path=""
    fi
  fi
  if [[ -n $blas_path ]]; then echo "== BLAS: OpenBLAS from $blas_path (LD_LIBRARY_PATH)"; fi
fi

# The environment every benchmark process runs in, for a thread count.
bench_env() {
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456 \
    OPENBLAS_NUM_THREADS="$1" ${blas_path:+LD_LIBRARY_PATH=$blas_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} "${@:2}"
}

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

# ---- the machine ------------------------------------------------------------------------------------------------
echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|L2 cache|L3 cache):' | sed 's/  */ /g'
echo "AVX-512: $(grep -q avx512f /proc/cpuinfo && echo yes || echo no)"
echo "$(g++ --version | head -1); torch $($python -c 'import torch; print(torch.__version__)')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$build"/bench/kiln_fma_peak

# ---- Kiln and libtorch -----------------------------------------------------------------------------------------
gb_args=(--benchmark_repetitions="$reps" --benchmark_display_aggregates_only=true --benchmark_color=false)
py_args=(--repetitions "$reps")
if ((quick)); then
  gb_args=(--benchmark_repetitions=1 --benchmark_min_time=0.02 --benchmark_color=false)
  py_args=(--repetitions 1 --min-time 0.02)
fi
for t in 1 2; do
  echo "== kiln_vs_torch, $t thread(s)"
  wait_quiet
  bench_env "$t" "$build"/bench/kiln_vs_torch --benchmark_filter="_t$t/" "${gb_args[@]}" \
    --benchmark_out="$out/kiln_vs_torch_t$t.json" --benchmark_out_format=json | tee "$out/kiln_vs_torch_t$t.txt"
done

# ---- the MLIR backend's compile times ---------------------------------------------------------------------------
echo "== kiln_jit_compile_time"
"$build"/bench/kiln_jit_compile_time $((quick ? 2 : 9)) | tee "$out/jit_compile_time.txt"

# ---- Python PyTorch --------------------------------------------------------------------------------------------
for t in 1 2; do
  echo "== bench_pytorch.py, $t thread(s)"
  wait_quiet
  bench_env "$t" $python bench/bench_pytorch.py --threads "$t" "${py_args[@]}" --json "$out/pytorch_t$t.json" |
    tee "$out/pytorch_t$t.txt"
done

# ---- one table --------------------------------------------------------------------------------------------------
echo
echo "== medians (us); x: how many times faster Kiln is (best torch: the fastest of libtorch, eager and jit)"
$python bench/bench_pytorch.py --combine "$out"/kiln_vs_torch_t1.json "$out"/kiln_vs_torch_t2.json \
  --json "$out"/pytorch_t1.json "$out"/pytorch_t2.json | tee "$out/summary.md"
exit
}

#!/usr/bin/env bash
# One training epoch, Kiln against PyTorch (Debian's 1.13.1), same network, optimizer, batch size and thread
# count, measured in one run; prints both medians and the ratio. PyTorch runs at its best here, configured as
# in bench/run.sh (see bench/README.md): OpenBLAS's OpenMP build (Debian's default libblas.so.3 is the
# reference BLAS), its AVX-512 kernels (OPENBLAS_CORETYPE/L2_SIZE unset), its threads pinned to torch's, and
# glibc malloc thresholds that stop large temporaries from page-faulting on every call.
#   bench/train_vs_pytorch.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bench}
source bench/common.sh  # configure_bench_build, find_openblas, bench_env
configure_bench_build "$build"
cmake --build "$build" -j2 --target kiln_train_epoch >/dev/null
find_openblas "$build" >/dev/null ||
  { echo "could not fetch libopenblas0-openmp: PyTorch would run on the reference BLAS" >&2; exit 1; }
for batch in 64 256; do
  for threads in 1 2; do
    kiln=$("$build/bench/kiln_train_epoch" --batch $batch --threads $threads --epochs 3)
    torch=$(bench_env $threads /usr/bin/python3 bench/train_epoch_pytorch.py --batch $batch --threads $threads --epochs 3)
    echo "$kiln"
    echo "$torch"
    k=$(sed -E 's/.*median ([0-9.]+) s.*/\1/' <<<"$kiln")
    t=$(sed -E 's/.*median ([0-9.]+) s.*/\1/' <<<"$torch")
    python3 -c "print(f'  batch $batch, $threads thread(s): Kiln is {$t / $k:.2f}x faster than PyTorch per epoch')"
  done
done

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
cmake --build "$build" -j2 --target kiln_train_epoch >/dev/null
libdir=/usr/lib/x86_64-linux-gnu
blas_path=""
if ! readlink -f "$libdir/libblas.so.3" | grep -q openblas-openmp; then
  blas_path=$(cd "$build" && pwd)/openblas$libdir/openblas-openmp  # the build dir may be relative or absolute
  if [[ ! -e $blas_path/libblas.so.3 ]]; then
    mkdir -p "$build/openblas"
    (cd "$build/openblas" && apt-get download libopenblas0-openmp >/dev/null 2>&1) &&
      dpkg -x "$build"/openblas/libopenblas0-openmp_*.deb "$build/openblas" ||
      { echo "could not fetch libopenblas0-openmp: PyTorch would run on the reference BLAS" >&2; exit 1; }
  fi
fi
for batch in 64 256; do
  for threads in 1 2; do
    kiln=$("$build/bench/kiln_train_epoch" --batch $batch --threads $threads --epochs 3)
    torch=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=$threads \
      ${blas_path:+LD_LIBRARY_PATH=$blas_path} \
      GLIBC_TUNABLES=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456 \
      /usr/bin/python3 bench/train_epoch_pytorch.py --batch $batch --threads $threads --epochs 3)
    echo "$kiln"
    echo "$torch"
    k=$(sed -E 's/.*median ([0-9.]+) s.*/\1/' <<<"$kiln")
    t=$(sed -E 's/.*median ([0-9.]+) s.*/\1/' <<<"$torch")
    python3 -c "print(f'  batch $batch, $threads thread(s): Kiln is {$t / $k:.2f}x faster than PyTorch per epoch')"
  done
done

# What bench/run.sh and bench/train_vs_pytorch.sh share (sourced, not run): the build folder, PyTorch's BLAS
# and the environment every benchmark process runs in. See bench/README.md, "How PyTorch is configured".

# configure_bench_build BUILD: a new build folder gets only what the benchmarks need; an existing one (a
# developer's) keeps its tests and samples and only gains the benchmarks (a non-Release one is flagged).
configure_bench_build() {
  local build=$1
  if [[ -f $build/CMakeCache.txt ]]; then
    cmake -S . -B "$build" -DKILN_BUILD_BENCH=ON >/dev/null
    local build_type
    build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt")
    [[ $build_type == Release ]] || echo "!! $build is a '$build_type' build, not Release: these are not Release timings" >&2
  else
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_BENCH=ON -DKILN_BUILD_TESTS=OFF \
      -DKILN_BUILD_SAMPLES=OFF >/dev/null
  fi
}

# find_openblas BUILD: sets blas_path to the folder to put first on LD_LIBRARY_PATH so that libtorch and PyTorch
# use OpenBLAS's OpenMP build ("" where the system's libblas.so.3 already is it). libopenblas0-openmp, not
# Debian's default -pthread: libtorch runs its own loops on OpenMP (libgomp), and OpenBLAS's own pthreads and
# libgomp's spinning workers then fight over the cores (2 threads, MLP-S batch 256: 12 ms instead of 0.37 ms).
# Debian's default libblas.so.3 is the reference BLAS; the package is downloaded and unpacked into BUILD/openblas
# (nothing is installed). Returns 1, with blas_path "", if it cannot be fetched.
find_openblas() {
  local build=$1 libdir=/usr/lib/x86_64-linux-gnu variant=openmp
  blas_path=""
  if readlink -f "$libdir/libblas.so.3" | grep -q "openblas-$variant"; then
    echo "== BLAS: the system's libblas.so.3 is OpenBLAS ($(readlink -f "$libdir/libblas.so.3"))"
    return 0
  fi
  local local_dir=$build/openblas
  blas_path=$(mkdir -p "$local_dir" && cd "$local_dir" && pwd)$libdir/openblas-$variant  # $build may be absolute
  if [[ ! -e $blas_path/libblas.so.3 ]]; then
    echo "== BLAS: libblas.so.3 is $(readlink -f "$libdir/libblas.so.3"), not OpenBLAS's OpenMP build: fetching libopenblas0-$variant"
    if ! (cd "$local_dir" && apt-get download "libopenblas0-$variant" 2>/dev/null) ||
       ! dpkg -x "$local_dir"/libopenblas0-"$variant"_*.deb "$local_dir"; then
      blas_path=""
      return 1
    fi
  fi
  echo "== BLAS: OpenBLAS from $blas_path (LD_LIBRARY_PATH)"
}

# bench_env THREADS CMD...: runs CMD as every benchmark process runs: OpenBLAS's AVX-512 kernels (this machine's
# environment sets OPENBLAS_CORETYPE=Haswell), its threads pinned to the benchmark's, glibc malloc thresholds that
# stop large temporaries from page-faulting on every call, and the OpenBLAS from find_openblas.
bench_env() {
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456 \
    OPENBLAS_NUM_THREADS="$1" ${blas_path:+LD_LIBRARY_PATH=$blas_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} "${@:2}"
}

#!/usr/bin/env bash
# The whole test suite (CI runs it through .ci/run):
#   1. g++ 12, then clang++-19: the `release` preset (Release, Ninja) into build/test-<compiler>, everything built
#      (header self-containment included) and CTest run: goldens, laws, errors, compile-fail pairs, samples, the
#      find_package consumer, the safetensors interop, the MLIR backend. Each pass runs the compile-fail pairs with
#      its own compiler only (KILN_COMPILE_FAIL_OTHER_COMPILER=OFF): the other pass runs them with the other. The
#      JIT and AOT kernels' tests (kiln_mlir_tests) build in the g++ pass only: LLVM compiles those kernels the
#      same whichever compiler built Kiln (the clang pass still builds the MLIR backend and runs its FileCheck
#      tests, the samples' JIT and AOT kernels, and every other test), and they are over a quarter of a pass's build.
#      The clang pass alone builds the portable tests (KILN_PORTABLE_TESTS, tests/CMakeLists.txt): the layers'
#      goldens and gradients built for x86-64-v3 (AVX2) and x86-64 (SSE2), the code CPUs without AVX-512 run.
#   2. The `asan-ubsan` preset (clang++-19 at -O0, AddressSanitizer + UndefinedBehaviorSanitizer, no MLIR, no
#      samples): kiln_tests and the file readers' fuzz targets (tests/fuzz/); its Catch2 tests and 3 seconds of
#      each fuzzer; the first report fails the test.
#   3. The `tsan` preset (clang++-19, ThreadSanitizer): kiln_tests built from the thread-pool tests alone
#      (tests/runtime/test_threads*.cpp: the pool, a model shared by threads), run under TSan.
# Each build is from scratch or from what the last run left in build/.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
status=0
step() { echo "== $1 =="; step_start=$SECONDS; }
took() { echo "== $1: $((SECONDS - step_start)) s =="; }
for compiler in g++ clang++-19; do
  dir=build/test-${compiler}
  mlir_tests=$([[ $compiler == g++ ]] && echo ON || echo OFF)
  portable_tests=$([[ $compiler == g++ ]] && echo OFF || echo ON)
  step "${compiler}"
  cmake --preset release -B "$dir" -DCMAKE_CXX_COMPILER="$compiler" -DKILN_COMPILE_FAIL_OTHER_COMPILER=OFF \
    -DKILN_MLIR_TESTS="$mlir_tests" -DKILN_PORTABLE_TESTS="$portable_tests" >/dev/null
  cmake --build "$dir" -j2
  ctest --test-dir "$dir" -j2 --output-on-failure || status=1
  took "${compiler}"
done
for preset in asan-ubsan tsan; do
  step "${preset}"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j2
  ctest --preset "$preset" -j2 || status=1
  took "${preset}"
done
exit $status

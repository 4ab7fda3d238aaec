#!/usr/bin/env bash
# The whole test suite, with g++ 12 and with clang 19: builds each from scratch-or-cache and runs CTest
# (goldens, laws, errors, compile-fail pairs, samples, the find_package consumer, the safetensors interop).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
status=0
for compiler in g++ clang++-19; do
  dir=build/test-${compiler}
  echo "== ${compiler} =="
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$compiler" >/dev/null
  cmake --build "$dir" -j2
  ctest --test-dir "$dir" -j2 --output-on-failure || status=1
done
exit $status

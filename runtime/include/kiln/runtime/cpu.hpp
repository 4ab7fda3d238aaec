// What the kernels size their blocks by on the CPU they run on: its L2 cache. The ET kernel's tiles of rows
// (et/fused.hpp) and the JIT's blocks of rows (codegen/mlir) both read it here.
#pragma once

#include <kiln/dsl/dims.hpp>

#include <unistd.h>

namespace kiln {

// Where the L2's size is not known (the system does not say, or an AOT kernel is built for another CPU): 1 MiB,
// Zen 4's and Zen 5's, Skylake-SP's.
inline constexpr index_t default_l2_cache_bytes = index_t{1} << 20;

// This CPU's L2 cache size in bytes, read once.
inline index_t l2_cache_bytes() {
  static const index_t bytes = [] {
    const long b = ::sysconf(_SC_LEVEL2_CACHE_SIZE);
    return b > 0 ? static_cast<index_t>(b) : default_l2_cache_bytes;
  }();
  return bytes;
}

}  // namespace kiln

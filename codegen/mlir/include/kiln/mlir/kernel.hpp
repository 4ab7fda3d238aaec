// A network compiled to machine code by the MLIR backend and loaded into this process (kiln::mlir, no MLIR
// or LLVM type in sight). kiln::jit::compile(model) in <kiln/jit.hpp> is the typed front of this.
#pragma once

#include <kiln/ir/network.hpp>
#include <kiln/mlir/compiler.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace kiln::mlir {

struct JitOptions {
  // Where compiled kernels are kept between processes. Default: $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln,
  // else ~/.cache/kiln. An empty path (with use_disk_cache) also means the default.
  std::filesystem::path cache_dir;
  bool use_disk_cache = true;
  bool use_memory_cache = true;
};

// Where a kernel came from, for tests and benchmarks.
enum class Origin { compiled, memory_cache, disk_cache };

class LoadedKernel {
 public:
  virtual ~LoadedKernel() = default;
  ir::KernelFn eval = nullptr;
  ir::KernelFn train = nullptr;
  ir::PackFn pack = nullptr;      // writes the packed weights (ir::KernelFn's buffer after the state_dict's)
  std::int64_t packed_floats = 0;  // their size (kiln::mlir::packed_floats)
  Origin origin = Origin::compiled;
  std::string key;  // the cache key: the network's description and the target CPU
};

// Compiles (or finds in the caches) the network's kernel for this machine's CPU and loads it.
// Thread-safe. Throws kiln::Error when a stage fails or the cache cannot be read.
std::shared_ptr<const LoadedKernel> jit_compile(const ir::Network& net, const JitOptions& options = {});

// The default on-disk cache directory (see JitOptions::cache_dir).
std::filesystem::path default_cache_dir();

}  // namespace kiln::mlir

// Kiln's MLIR backend, compiled into kiln::mlir. This header names no MLIR or LLVM type: the DSL and its users
// include it without MLIR's headers. The lowering itself lives in codegen/mlir/src.
//
// A network (kiln::ir::Network) lowers along a ladder of stages, each inspectable (`kiln-mlir --emit=...`):
//   mlir          func + linalg / tensor / arith / math on tensors, one function per mode
//   linalg        elementwise ops fused, bufferized, contractions tiled and vectorised with their epilogues
//   llvm-dialect  the LLVM dialect, with the C entry points <name>_eval, <name>_train and <name>_pack
//   llvm-ir       LLVM IR, optimised for the target CPU
//   obj           a relocatable object file for the target CPU
#pragma once

#include <kiln/ir/network.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::mlir {

enum class Stage { mlir, linalg, llvm_dialect, llvm_ir, obj };

// "mlir", "linalg", "llvm-dialect", "llvm-ir", "obj"; throws kiln::Error for another name.
Stage stage_from_name(std::string_view name);

struct Target {
  std::string triple;    // empty: this machine's
  std::string cpu;       // empty: this machine's ("x86-64-v3", "skylake-avx512", ...)
  std::string features;  // empty: the CPU's
  std::int64_t l2_bytes = 0;  // the L2 cache per core that the kernels block for; 0: this machine's when no cpu
                              // or triple is given (as the JIT compiles), else 1 MiB
};

// The host CPU's name and features, as LLVM sees them, and its L2 cache: part of every cache key.
Target host_target();

// The network at a stage of the ladder: text for every stage but obj, the object file's bytes for obj.
// `name` prefixes the entry points. Throws kiln::Error naming the stage when a step fails. `time_passes`: print
// to stderr the time of every MLIR pass (per stage) and LLVM pass (its O3 pipeline, then codegen), as
// `kiln-mlir --time-passes` does; LLVM's codegen timers are process-wide, so not while other compiles run.
std::string lower(const ir::Network& net, const std::string& name, Stage stage, const Target& target = {},
                  bool time_passes = false);

// The object files of both modes (eval first, then train), compiled side by side on two threads: what the
// JIT links. Same entry points as lower(net, name, Stage::obj).
std::vector<std::string> lower_objects(const ir::Network& net, const std::string& name, const Target& target = {});

// How many floats the kernel's packed weights take (the buffer after the state_dict's, ir::PackFn): W^T of every
// Linear with 16 outputs or more, so that its tiles broadcast inputs against rows of W^T as the
// expression-template kernel does. 0 for a network without such a Linear.
std::int64_t packed_floats(const ir::Network& net);

// The header an ahead-of-time kernel ships with: the entry points and the buffer list, as plain C++.
std::string kernel_header(const ir::Network& net, const std::string& name);

}  // namespace kiln::mlir

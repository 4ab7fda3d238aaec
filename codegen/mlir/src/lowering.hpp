// The steps of Kiln's MLIR ladder, one place each (internal to kiln::mlir). Laid out as MLIR lays out its own
// conversions: a builder for the first stage, then populate...Patterns / create...Pass per step.
#pragma once

#include <kiln/ir/network.hpp>
#include <kiln/mlir/compiler.hpp>

#include <mlir/IR/BuiltinOps.h>
#include <mlir/IR/PatternMatch.h>
#include <mlir/Pass/Pass.h>

#include <algorithm>
#include <memory>
#include <string>

namespace kiln::mlir_backend {

inline std::string implName(const std::string& name, bool training) {
  return name + (training ? "_train_impl" : "_eval_impl");
}
inline std::string entryName(const std::string& name, bool training) { return name + (training ? "_train" : "_eval"); }
inline std::string packName(const std::string& name) { return name + "_pack"; }
inline std::string packImplName(const std::string& name) { return name + "_pack_impl"; }

// The packed weights (compiler.hpp's packed_floats): a Linear with more than 4 outputs has W^T, its columns
// rounded up to a multiple of 16 (zero past out), at packedOffset(net, its index) floats into the buffer, in
// panels of `panelColumns` columns (the last one narrower), each [In, its columns] row-major, one after the
// other: a broadcast tile reads one panel as one contiguous stream, and stores the lanes of its last vector that
// are outputs. A Linear of at most kDotOut outputs runs as dot products instead, as the expression-template
// kernel's (linear_dots): a vector of 16 columns would leave most of its lanes idle. Its packed weights are chunks:
// a vector of `dotLanes` holds P outputs (out rounded up to 1, 2 or 4: dotChunkOutputs) for c = dotLanes / P
// consecutive inputs, chunk q's lane o * c + j being W[o][q * c + j] (zero past out and In); the region is 16 x In
// floats, which holds them for any dotLanes.
// A panel is as wide as a broadcast tile: 64 columns (4 vectors of 16) for a target with AVX-512's 32 vector
// registers, 16 for one with 16 (AVX2: a tile of 6 rows x 64 columns would need 48 of them; net_seed's kernel,
// 784-256-10, compiled for haswell, on Zen 5 at batch 256: 94 GFLOP/s in tiles of 64 columns, 128-130 in 16).
// A dot-product tile's rows have a vector of `dotLanes` partial sums each: 16 lanes with 32 registers, 8 with 16,
// where accumulators of 16 lanes would take twice the registers and spill (tiny 16-32-32-4 at batch 4096 on Zen 3:
// its Linear(32, 4) 39 us in 4 x 4 tiles of 16 lanes, when a tile had an accumulator per row and output).
inline constexpr int64_t kDotOut = 4;
inline constexpr int64_t dotChunkOutputs(int64_t out) { return out <= 2 ? std::max<int64_t>(out, 1) : 4; }
struct RegisterTiles {
  int64_t panelColumns;  // a broadcast tile's columns: 64 or 16
  int64_t dotLanes;      // 16 or 8
};
RegisterTiles registerTiles(bool wideRegisterFile);
int64_t packedColumns(const ir::Layer& layer);
int64_t packedOffset(const ir::Network& net, std::size_t layer);
// The array of `sizes` at `offset` floats into the flat f32 memref `flat`, with the given strides, or row-major.
::mlir::Value stridedView(::mlir::OpBuilder& b, ::mlir::Location loc, ::mlir::Value flat, int64_t offset,
                          ::llvm::ArrayRef<int64_t> sizes, ::llvm::ArrayRef<int64_t> strides);
::mlir::Value rowMajorView(::mlir::OpBuilder& b, ::mlir::Location loc, ::mlir::Value flat, int64_t offset,
                           ::llvm::ArrayRef<int64_t> sizes);
// t > acc ? t : acc, so that from acc = -inf a run of them gives the largest value but NaN (Softmax's max, where
// that is enough: build_network.cpp); x86's maxps. combiningKind (contraction_to_vector.cpp) knows a reduction
// of this form.
::mlir::Value largerNotNaN(::mlir::OpBuilder& b, ::mlir::Location loc, ::mlir::Value acc, ::mlir::Value t);
// The attribute that marks the function argument holding the packed weights, and the one that gives a
// linalg.matmul_transpose_b its weights' offset in it.
inline constexpr char kPackedArgument[] = "kiln.packed_weights";
inline constexpr char kPackedOffset[] = "kiln.packed_offset";

// Which of a network's functions a module holds: eval (with the packing) and train, or one of them.
enum class Modes { both, eval, train };

// Stage "mlir": <name>_eval_impl and <name>_train_impl in func + linalg on tensors, and <name>_pack_impl, which
// writes the packed weights (build_network.cpp); those of `modes`.
void buildNetworkFunctions(::mlir::ModuleOp module, const ir::Network& net, const std::string& name,
                           RegisterTiles tiles, Modes modes = Modes::both);
// Throws kiln::Error naming the layer when build_network.cpp has no lowering for its kind, or when the layer
// lacks a parameter or attribute its lowering reads (run before any MLIR is built: nothing throws through MLIR).
void checkLowering(const ir::Layer& layer);

// Stage "linalg" (contraction_to_vector.cpp): every linalg.matmul_transpose_b on buffers, with the elementwise
// linalg.generic that consumes it (its epilogue: bias, activation, dropout), becomes one register-tiled loop
// nest of vector FMAs whose epilogue runs on the tile while it is in registers; so does Bilinear's first stage.
// The packing's linalg.transpose becomes a call of one vectorised transpose function.
// Its tiles are the target's (RegisterTiles); whether tiles prefetch weights depends on the target's L2 size.
void populateContractionToVectorPatterns(::mlir::RewritePatternSet& patterns, RegisterTiles tiles, int64_t l2Bytes);
std::unique_ptr<::mlir::Pass> createContractionToVectorPass(RegisterTiles tiles, int64_t l2Bytes);

// Stage "llvm-dialect" (entry_points.cpp): the C entry points <name>_eval / <name>_train with the calling
// convention of ir::KernelFn and <name>_pack with that of ir::PackFn, each unpacking the buffer array into the
// memref descriptors of its _impl (of those the module has). The eval entry point runs its _impl on blocks of
// rows sized for an L2 cache of `l2Bytes`.
std::unique_ptr<::mlir::Pass> createEntryPointsPass(const ir::Network& net, const std::string& name, int64_t l2Bytes);

}  // namespace kiln::mlir_backend

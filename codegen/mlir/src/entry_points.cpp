// Step 3b of the ladder (in the LLVM dialect): the C entry points.
//
// MLIR passes each memref argument of <name>_<mode>_impl as its expanded descriptor (allocated pointer,
// aligned pointer, offset, sizes, strides). The entry point has the fixed signature of ir::KernelFn,
//   void <name>_<mode>(void* const* buffers, int64_t batch, uint64_t seed, uint64_t step),
// and builds those descriptors from the buffer array: every parameter and buffer a flat contiguous tensor,
// the inputs and the output [batch, features]. The _impl becomes internal, so LLVM inlines it.
#include "lowering.hpp"

#include <mlir/Dialect/LLVMIR/LLVMDialect.h>

namespace kiln::mlir_backend {

using namespace ::mlir;

namespace {

struct EntryPointsPass : PassWrapper<EntryPointsPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(EntryPointsPass)
  EntryPointsPass(const ir::Network& net, std::string name) : net_(net), name_(std::move(name)) {}
  StringRef getArgument() const final { return "kiln-entry-points"; }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    for (bool training : {false, true}) {
      auto impl = module.lookupSymbol<LLVM::LLVMFuncOp>(implName(name_, training));
      if (!impl) {
        module.emitError() << "no function " << implName(name_, training) << " to call from the entry point";
        return signalPassFailure();
      }
      impl.setLinkage(LLVM::Linkage::Internal);
      build(module, impl, entryName(name_, training));
    }
  }

  void build(ModuleOp module, LLVM::LLVMFuncOp impl, const std::string& name) {
    MLIRContext* ctx = module.getContext();
    OpBuilder b(ctx);
    Location loc = b.getUnknownLoc();
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    auto i64 = b.getI64Type();
    b.setInsertionPointToEnd(module.getBody());
    auto fn = b.create<LLVM::LLVMFuncOp>(loc, name, LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx), {ptr, i64, i64, i64}));
    Block* entry = fn.addEntryBlock(b);
    b.setInsertionPointToStart(entry);
    Value buffers = entry->getArgument(0), batch = entry->getArgument(1);
    auto constant = [&](int64_t v) { return b.create<LLVM::ConstantOp>(loc, i64, b.getI64IntegerAttr(v)).getResult(); };
    SmallVector<Value> args{batch, entry->getArgument(2), entry->getArgument(3)};
    int slot = 0;
    auto pointer = [&]() {
      Value at = b.create<LLVM::GEPOp>(loc, ptr, ptr, buffers, ArrayRef<LLVM::GEPArg>{slot++});
      return b.create<LLVM::LoadOp>(loc, ptr, at).getResult();
    };
    for (const SchemaEntry& buf : net_.buffers) {
      Value p = pointer();
      args.append({p, p, constant(0), constant(buf.spec.dtype() == DType::int64 ? 1 : buf.spec.shape.numel()), constant(1)});
    }
    auto rows = [&](const Dims& d) {
      Value p = pointer();
      args.append({p, p, constant(0), batch, constant(d.numel()), constant(d.numel()), constant(1)});
    };
    rows(net_.input);
    if (net_.input_count == 2) rows(net_.input2);
    rows(net_.output);
    if (args.size() != impl.getNumArguments()) {
      impl.emitError() << "expects " << impl.getNumArguments() << " arguments but the entry point passes "
                       << args.size();
      return signalPassFailure();
    }
    b.create<LLVM::CallOp>(loc, impl, args);
    b.create<LLVM::ReturnOp>(loc, ValueRange{});
  }

  const ir::Network& net_;
  std::string name_;
};

}  // namespace

std::unique_ptr<Pass> createEntryPointsPass(const ir::Network& net, const std::string& name) {
  return std::make_unique<EntryPointsPass>(net, name);
}

}  // namespace kiln::mlir_backend

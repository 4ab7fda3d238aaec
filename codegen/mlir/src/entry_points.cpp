// Step 3b of the ladder (in the LLVM dialect): the C entry points.
//
// MLIR passes each memref argument of <name>_<mode>_impl as its expanded descriptor (allocated pointer,
// aligned pointer, offset, sizes, strides). The entry point has the fixed signature of ir::KernelFn,
//   void <name>_<mode>(void* const* buffers, int64_t batch, uint64_t seed, uint64_t step),
// and builds those descriptors from the buffer array: every parameter and buffer a flat contiguous tensor, the
// packed weights too, the inputs and the output [batch, features]. <name>_pack(void* const* buffers) (ir::PackFn)
// does the same for <name>_pack_impl, without inputs and output. Each _impl becomes internal, so LLVM inlines it.
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
    int found = 0;
    for (const std::string& entry : {entryName(name_, false), entryName(name_, true), packName(name_)}) {
      const std::string implementation = entry == packName(name_) ? packImplName(name_) : entry + "_impl";
      auto impl = module.lookupSymbol<LLVM::LLVMFuncOp>(implementation);
      if (!impl) continue;  // a module of one mode (lower_objects)
      ++found;
      impl.setLinkage(LLVM::Linkage::Internal);
      build(module, impl, entry, entry != packName(name_));
    }
    if (found == 0) {
      module.emitError() << "no function " << implName(name_, false) << " or " << implName(name_, true)
                         << " to call from an entry point";
      signalPassFailure();
    }
  }

  // A kernel's entry point (ir::KernelFn), or with `run` false the packing's (ir::PackFn).
  void build(ModuleOp module, LLVM::LLVMFuncOp impl, const std::string& name, bool run) {
    MLIRContext* ctx = module.getContext();
    OpBuilder b(ctx);
    Location loc = b.getUnknownLoc();
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    auto i64 = b.getI64Type();
    b.setInsertionPointToEnd(module.getBody());
    SmallVector<Type> params{ptr};
    if (run) params.append({i64, i64, i64});
    auto fn = b.create<LLVM::LLVMFuncOp>(loc, name, LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx), params));
    Block* entry = fn.addEntryBlock(b);
    b.setInsertionPointToStart(entry);
    Value buffers = entry->getArgument(0);
    auto constant = [&](int64_t v) { return b.create<LLVM::ConstantOp>(loc, i64, b.getI64IntegerAttr(v)).getResult(); };
    SmallVector<Value> args;
    if (run) args.append({entry->getArgument(1), entry->getArgument(2), entry->getArgument(3)});
    int slot = 0;
    auto pointer = [&]() {
      Value at = b.create<LLVM::GEPOp>(loc, ptr, ptr, buffers, ArrayRef<LLVM::GEPArg>{slot++});
      return b.create<LLVM::LoadOp>(loc, ptr, at).getResult();
    };
    auto flat = [&](int64_t size) {
      Value p = pointer();
      args.append({p, p, constant(0), constant(size), constant(1)});
    };
    for (const SchemaEntry& buf : net_.buffers) flat(buf.spec.dtype() == DType::int64 ? 1 : buf.spec.shape.numel());
    flat(kiln::mlir::packed_floats(net_));
    auto rows = [&](const Dims& d) {
      Value p = pointer(), batch = entry->getArgument(1);
      args.append({p, p, constant(0), batch, constant(d.numel()), constant(d.numel()), constant(1)});
    };
    if (run) {
      rows(net_.input);
      if (net_.input_count == 2) rows(net_.input2);
      rows(net_.output);
    }
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

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

// The eval entry point's blocks of rows: a multiple of the 6-row tiles and of 16 rows (so that every block
// starts 64-byte aligned where the first does).
constexpr int64_t kChunkMultiple = 48;

struct EntryPointsPass : PassWrapper<EntryPointsPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(EntryPointsPass)
  EntryPointsPass(const ir::Network& net, std::string name, int64_t l2Bytes)
      : net_(net), name_(std::move(name)), l2Bytes_(l2Bytes) {}
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
    auto i64 = b.getI64Type();
    b.setInsertionPointToEnd(module.getBody());
    SmallVector<Type> params{LLVM::LLVMPointerType::get(ctx)};
    if (run) params.append({i64, i64, i64});
    auto fn = b.create<LLVM::LLVMFuncOp>(b.getUnknownLoc(), name,
                                         LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx), params));
    b.setInsertionPointToStart(fn.addEntryBlock(b));
    Arguments args(b, fn.getArgument(0));
    for (const SchemaEntry& buf : net_.buffers) args.flat(buf.spec.dtype() == DType::int64 ? 1 : buf.spec.shape.numel());
    args.flat(kiln::mlir::packed_floats(net_));
    if (run) {
      args.rows(net_.input);
      if (net_.input_count == 2) args.rows(net_.input2);
      args.rows(net_.output);
    }
    size_t passed = args.flats.size();
    if (!run) b.create<LLVM::CallOp>(b.getUnknownLoc(), impl, args.flats);
    else if (name == entryName(name_, false)) passed = callOnBlocks(b, fn, impl, args, chunkRows());
    else passed = args.call(impl, fn, args.constant(0), fn.getArgument(1));
    b.create<LLVM::ReturnOp>(b.getUnknownLoc(), ValueRange{});
    if (passed != impl.getNumArguments()) {
      impl.emitError() << "expects " << impl.getNumArguments() << " arguments but the entry point passes " << passed;
      signalPassFailure();
    }
  }

  // An _impl's arguments, read from the buffer array: the flat buffers' descriptors, and the pointers of the
  // inputs and the output with their floats per row.
  struct Arguments {
    OpBuilder& b;
    Value buffers;
    int slot = 0;
    SmallVector<Value> flats;
    SmallVector<std::pair<Value, int64_t>> rowsAt;

    Arguments(OpBuilder& builder, Value bufferArray) : b(builder), buffers(bufferArray) {}
    Value constant(int64_t v) {
      return b.create<LLVM::ConstantOp>(b.getUnknownLoc(), b.getI64Type(), b.getI64IntegerAttr(v));
    }
    Value pointer() {
      auto ptr = LLVM::LLVMPointerType::get(b.getContext());
      Value at = b.create<LLVM::GEPOp>(b.getUnknownLoc(), ptr, ptr, buffers, ArrayRef<LLVM::GEPArg>{slot++});
      return b.create<LLVM::LoadOp>(b.getUnknownLoc(), ptr, at);
    }
    void flat(int64_t size) {
      Value p = pointer();
      flats.append({p, p, constant(0), constant(size), constant(1)});
    }
    void rows(const Dims& d) { rowsAt.emplace_back(pointer(), d.numel()); }
    // fn's _impl on rows [first, first + count) of the inputs and the output; returns how many arguments it passes.
    size_t call(LLVM::LLVMFuncOp impl, LLVM::LLVMFuncOp fn, Value first, Value count) {
      Location loc = b.getUnknownLoc();
      SmallVector<Value> args{count, fn.getArgument(2), fn.getArgument(3)};
      args.append(flats);
      for (auto [base, floats] : rowsAt) {
        Value offset = b.create<LLVM::MulOp>(loc, first, constant(floats));
        Value p = b.create<LLVM::GEPOp>(loc, base.getType(), b.getF32Type(), base, ValueRange{offset});
        args.append({p, p, constant(0), count, constant(floats), constant(floats), constant(1)});
      }
      b.create<LLVM::CallOp>(loc, impl, args);
      return args.size();
    }
  };

  // The eval _impl on blocks of `chunk` rows (each row's output depends on that row alone), so that the layers'
  // values stay in cache from one layer to the next; the last block takes what is left once that is less than
  // one and a half blocks. Leaves b at the end of the loop's exit block; returns how many arguments the call passes.
  static size_t callOnBlocks(OpBuilder& b, LLVM::LLVMFuncOp fn, LLVM::LLVMFuncOp impl, Arguments& args, int64_t chunk) {
    Location loc = b.getUnknownLoc();
    Value batch = fn.getArgument(1);
    Block* header = fn.addBlock();
    Block* body = fn.addBlock();
    Block* exit = fn.addBlock();
    Value first = header->addArgument(b.getI64Type(), loc);
    b.create<LLVM::BrOp>(loc, ValueRange{args.constant(0)}, header);
    b.setInsertionPointToStart(header);
    b.create<LLVM::CondBrOp>(loc, b.create<LLVM::ICmpOp>(loc, LLVM::ICmpPredicate::slt, first, batch), body, exit);
    b.setInsertionPointToStart(body);
    Value left = b.create<LLVM::SubOp>(loc, batch, first);
    Value last = b.create<LLVM::ICmpOp>(loc, LLVM::ICmpPredicate::slt, left, args.constant(chunk + chunk / 2));
    Value count = b.create<LLVM::SelectOp>(loc, last, left, args.constant(chunk));
    const size_t passed = args.call(impl, fn, first, count);
    b.create<LLVM::BrOp>(loc, ValueRange{b.create<LLVM::AddOp>(loc, first, count).getResult()}, header);
    b.setInsertionPointToStart(exit);
    return passed;
  }

  // Rows per call of the eval _impl: about as many as make the widest layer's output a quarter of L2 (the
  // layer's input, its weights and the other values still live share the rest).
  int64_t chunkRows() const {
    int64_t widest = std::max(net_.input.numel(), net_.input2.numel());
    for (const ir::Layer& layer : net_.layers) widest = std::max(widest, layer.out.numel());
    const int64_t budget = l2Bytes_ / 4 / static_cast<int64_t>(sizeof(float));
    const int64_t rows = budget / std::max<int64_t>(widest, 1) / kChunkMultiple * kChunkMultiple;
    return std::max(rows, kChunkMultiple);
  }

  const ir::Network& net_;
  std::string name_;
  int64_t l2Bytes_;
};

}  // namespace

std::unique_ptr<Pass> createEntryPointsPass(const ir::Network& net, const std::string& name, int64_t l2Bytes) {
  return std::make_unique<EntryPointsPass>(net, name, l2Bytes);
}

}  // namespace kiln::mlir_backend

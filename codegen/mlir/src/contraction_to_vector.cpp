// Step 2b of the ladder (after one-shot bufferization): contractions to register-tiled vector code, with their
// elementwise epilogue fused in.
//
// A Linear is y = x W^T with W in PyTorch's [Out, In] layout. One of more than 4 outputs reads W^T from the kernel's
// packed weights (build_network.cpp writes them when the parameters change; zero past the outputs in its last vector
// of 16 columns): a tile of 6 rows x 4 vectors of 16 columns accumulates broadcast(x[i, k]) * W^T[k, j:j+16] over k,
// as the expression-template kernel's micro-kernel does. A Linear of at most 4 outputs is dot products over the
// packed weights' chunks of inputs (lowering.hpp), as the expression-template kernel's linear_dots: tiles of 8 rows,
// a vector of partial sums per row (vector.fma; 16 lanes, or 8 where the target has 16 vector registers:
// RegisterTiles) reduced at the end of K. The elementwise linalg.generic that consumes the product (bias,
// activation, dropout, after linalg's elementwise fusion) is cloned onto the tile's rows as vector ops while the
// sums are in registers, and stores the layer's output: the intermediate product never reaches memory. (After dot
// products over a long K, a costly epilogue, GELU, Tanh, ..., runs instead on rows of the stored product, block of
// rows by block of rows.) Where the weights outgrow L2, a 6-row tile prefetches into L2, as its k loop goes, a share
// of the packed weights the next column block reads (kAheadFloats). From K = 256 on, a broadcast tile's k loop is a
// function of its own, which the Linears of one shape share (BroadcastLoop). The same pass runs LayerNorm's,
// RMSNorm's and Softmax's statistics and outputs row by row (RowStatisticsToVector), makes the packing's
// transposes 16 x 16 blocks through registers (TransposeToVector), and then runs the elementwise generics left
// (a network's first activation, Dropout alone) on vectors along their rows (ElementwiseToVector).
#include "lowering.hpp"

#include <mlir/Dialect/Arith/IR/Arith.h>
#include <mlir/Dialect/Func/IR/FuncOps.h>
#include <mlir/Dialect/LLVMIR/LLVMDialect.h>
#include <mlir/Dialect/Linalg/IR/Linalg.h>
#include <mlir/Dialect/Math/IR/Math.h>
#include <mlir/Dialect/MemRef/IR/MemRef.h>
#include <mlir/Dialect/SCF/IR/SCF.h>
#include <mlir/Dialect/Vector/IR/VectorOps.h>
#include <mlir/IR/IRMapping.h>
#include <mlir/Transforms/GreedyPatternRewriteDriver.h>

#include <algorithm>
#include <optional>
#include <string>

namespace kiln::mlir_backend {

using namespace ::mlir;

namespace {

constexpr int64_t kLanes = 16;  // f32 lanes of the vectors along K (one AVX-512 register)
constexpr int64_t kChunkRows = 8;  // a packed-chunk tile's rows: 8 chains of FMAs (the ET kernel's, for two FMA units)
constexpr int64_t kOneRowSets = 4;  // a one-row packed-chunk tile's accumulators (the ET kernel's linear_one_row_sets)
constexpr int64_t kL2Floats = 256 * 1024 / 4;  // a block of rows kept in L2 while the columns pass
constexpr int64_t kShortK = 64;  // up to this K, a costly epilogue still runs in the dot-product tiles
constexpr int64_t kBroadcastRows = 6;  // a broadcast tile's rows; its columns: the target's (lowering.hpp)
constexpr int64_t kBilinearRows = 12;  // Bilinear's rows per block: its [rows, O, J] intermediate stays in cache
constexpr int64_t kAlternateFloats = 32 * 1024;  // from 128 KB of weights, every other call walks them backwards
constexpr int64_t kOutlineK = 256;  // from this K, a broadcast tile's k loop is a function of its own (BroadcastLoop)
// A 6-row tile's k loop prefetches into L2 the next column block's panel, a cache line per k (BroadcastLoop): a
// network whose weights outgrow L2 reads each panel from L3 in its first tile, at L3's latency. Intel Xeon, one
// thread, us at batch 32 / 256 (the ET kernel, prefetching likewise, 306-319 / 2247-2483 for mlp_norm): mlp_norm
// 369-377 / 2297-2536 -> 317-350 / 2359-2563, resmlp 252-269 / 1725-1830 -> 235-239 / 1748-1813, resmlp6 814-829 /
// 5031-5150 -> 696-745 / 5050-5355; a line every other k covered less of the panel at batch 32 (resmlp6 774-804).
// Where the weights stay in L2 (weightsStayInL2), the prefetches only cost: MLP-S (1.1 MB) at batch 4096 on the
// Intel Xeon, JIT us, its Linear(784, 256) and ReLU 8838-8884 -> 8166-8303, the network 11959-12327 -> 11759-11887.
constexpr int64_t kAheadFloats = 16;

// The elementwise epilogue of a contraction: an all-parallel 2-D linalg.generic reading the product with the
// identity map, every other input with the identity or the column-broadcast map (d0, d1) -> (d1), writing one
// identity-mapped output, and not reading that output's old value.
bool isEpilogue(linalg::GenericOp g, Value product) {
  if (g.getNumLoops() != 2 || g.getNumParallelLoops() != 2 || g.getNumDpsInits() != 1) return false;
  bool readsProduct = false;
  for (OpOperand* in : g.getDpsInputOperands()) {
    AffineMap m = g.getMatchingIndexingMap(in);
    const bool identity = m.isIdentity();
    const bool columns = m.getNumResults() == 1 && m.getResult(0) == getAffineDimExpr(1, g.getContext());
    if (!isa<MemRefType>(in->get().getType()) || !(identity || columns)) return false;
    if (in->get() == product) readsProduct |= identity;
  }
  OpOperand* out = g.getDpsInitOperand(0);
  if (!g.getMatchingIndexingMap(out).isIdentity() || g.payloadUsesValueFromOperand(out)) return false;
  return readsProduct;
}

// A linalg op on buffers whose every output is a buffer allocated in its function (memref.alloc): nothing that
// exists before the allocation, the matmul's operands among them, can alias what it writes.
bool writesOnlyNewBuffers(Operation* op) {
  auto linalgOp = dyn_cast<linalg::LinalgOp>(op);
  return linalgOp && linalgOp.hasPureBufferSemantics() && llvm::all_of(linalgOp.getDpsInits(), [](Value init) {
           return init.getDefiningOp<memref::AllocOp>() != nullptr;
         });
}

// An epilogue with a math function (exp, erf, tanh, ...), a division, or more than a few operations: one that
// costs much more per element on narrow vectors than the loads and stores of running it on its own.
bool isCostlyEpilogue(linalg::GenericOp g) {
  constexpr int kCheapOps = 12;
  int ops = 0;
  for (Operation& op : g.getRegion().front().without_terminator()) {
    if (isa<math::MathDialect>(op.getDialect()) || isa<arith::DivFOp>(op)) return true;
    ++ops;
  }
  return ops > kCheapOps;
}

// The payload of a linalg.generic (its ops without the terminator) on vector<width> values: `map` holds what its
// block arguments are; an op reading a vector becomes the same op on vectors (its scalar operands broadcast),
// any other op is cloned. `index(d)` is linalg.index d's value. Returns the yielded value, as a vector.
Value vectorizePayload(OpBuilder& b, Location loc, Block& body, IRMapping& map, int64_t width,
                       function_ref<Value(int64_t)> index) {
  auto vectorOf = [&](Value v) -> Value {
    if (isa<VectorType>(v.getType())) return v;
    return b.create<vector::BroadcastOp>(loc, VectorType::get({width}, v.getType()), v);
  };
  for (Operation& op : body.without_terminator()) {
    if (auto indexOp = dyn_cast<linalg::IndexOp>(op)) {
      map.map(indexOp.getResult(), index(static_cast<int64_t>(indexOp.getDim())));
      continue;
    }
    const bool anyVector = llvm::any_of(op.getOperands(), [&](Value v) {
      return isa<VectorType>(map.lookupOrDefault(v).getType());
    });
    if (!anyVector || op.getNumRegions() != 0) {
      b.clone(op, map);
      continue;
    }
    OperationState state(loc, op.getName());
    for (Value v : op.getOperands()) state.addOperands(vectorOf(map.lookupOrDefault(v)));
    for (Type t : op.getResultTypes()) state.addTypes(VectorType::get({width}, t));
    state.addAttributes(op.getAttrs());
    Operation* vop = b.create(state);
    map.map(op.getResults(), vop->getResults());
  }
  return vectorOf(map.lookupOrDefault(body.getTerminator()->getOperand(0)));
}

// rows[r][c] becomes rows[c][r] (16 x 16): at each level s = 8, 4, 2, 1, rows i and i + s swap their
// off-diagonal s x s blocks, two shuffles per pair (64 in all).
void transpose16(OpBuilder& b, Location loc, SmallVector<Value>& rows) {
  for (int64_t s = kLanes / 2; s >= 1; s /= 2) {
    SmallVector<int64_t> first, second;
    for (int64_t c = 0; c < kLanes; ++c) {
      first.push_back(c & s ? kLanes + c - s : c);
      second.push_back(c & s ? kLanes + c : c + s);
    }
    for (int64_t i = 0; i < kLanes; ++i) {
      if (i & s) continue;
      Value x = rows[i], y = rows[i + s];
      rows[i] = b.create<vector::ShuffleOp>(loc, x, y, first);
      rows[i + s] = b.create<vector::ShuffleOp>(loc, x, y, second);
    }
  }
}

// kiln_transpose(w, wt): wt[k, n] = w[n, k] for every n < wt's columns and k < w's columns, 16 x 16 blocks
// through registers (each block of w's rows read once along k), the last K % 16 rows and columns % 16 columns of
// wt element by element (the copy element by element took as long as a call of the 16-32-32-4 MLP at batch 32).
// One function per module, internal and not inlined, so that its shuffles are compiled once however many
// Linears it packs.
func::FuncOp transposeFunction(OpBuilder& builder, Location loc, MemRefType matrix) {
  constexpr llvm::StringLiteral name = "kiln_transpose";
  auto module = builder.getInsertionBlock()->getParentOp()->getParentOfType<ModuleOp>();
  if (auto existing = module.lookupSymbol<func::FuncOp>(name)) return existing;
  OpBuilder b(module.getBodyRegion());
  b.setInsertionPointToEnd(module.getBody());
  auto fn = b.create<func::FuncOp>(loc, name, b.getFunctionType({matrix, matrix}, {}));
  fn.setPrivate();
  fn->setAttr("no_inline", b.getUnitAttr());
  fn->setAttr("llvm.linkage", LLVM::LinkageAttr::get(b.getContext(), LLVM::Linkage::Internal));
  b.setInsertionPointToStart(fn.addEntryBlock());
  Value w = fn.getArgument(0), wt = fn.getArgument(1);
  auto index = [&](int64_t v) -> Value { return b.create<arith::ConstantIndexOp>(loc, v); };
  Value K = b.create<memref::DimOp>(loc, w, 1), nCols = b.create<memref::DimOp>(loc, wt, 1);
  Value kFull = b.create<arith::SubIOp>(loc, K, b.create<arith::RemUIOp>(loc, K, index(kLanes)));
  Value nFull = b.create<arith::SubIOp>(loc, nCols, b.create<arith::RemUIOp>(loc, nCols, index(kLanes)));
  auto forEach = [&](Value begin, Value end, int64_t step, auto body) {
    auto loop = b.create<scf::ForOp>(loc, begin, end, index(step));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    body(loop.getInductionVar());
  };
  auto plus = [&](Value v, int64_t d) -> Value { return d == 0 ? v : b.create<arith::AddIOp>(loc, v, index(d)); };
  auto lanes = VectorType::get({kLanes}, b.getF32Type());
  forEach(index(0), nFull, kLanes, [&](Value n) {
    forEach(index(0), kFull, kLanes, [&](Value k) {
      SmallVector<Value> rows;
      for (int64_t r = 0; r < kLanes; ++r) rows.push_back(b.create<vector::LoadOp>(loc, lanes, w, ValueRange{plus(n, r), k}));
      transpose16(b, loc, rows);
      for (int64_t r = 0; r < kLanes; ++r) b.create<vector::StoreOp>(loc, rows[r], wt, ValueRange{plus(k, r), n});
    });
  });
  auto copy = [&](Value k, Value n) {
    b.create<memref::StoreOp>(loc, b.create<memref::LoadOp>(loc, w, ValueRange{n, k}), wt, ValueRange{k, n});
  };
  forEach(kFull, K, 1, [&](Value k) { forEach(index(0), nFull, 1, [&](Value n) { copy(k, n); }); });
  forEach(index(0), K, 1, [&](Value k) { forEach(nFull, nCols, 1, [&](Value n) { copy(k, n); }); });
  b.create<func::ReturnOp>(loc);
  return fn;
}

// True on every other call of the kernel (an i1): a counter of its own in the module, incremented atomically
// (calls from several threads are fine). A Linear whose weights are about the size of L2 evicts, called again
// and again in one order, the weights it is about to read; walking its column blocks backwards on every other
// call reads first what the last call read last, still in cache (the expression-template kernel's
// linear_forward does the same).
Value alternateCalls(OpBuilder& builder, Location loc) {
  auto module = builder.getInsertionBlock()->getParentOp()->getParentOfType<ModuleOp>();
  auto counterType = MemRefType::get({1}, builder.getI64Type());
  auto zero = DenseElementsAttr::get(RankedTensorType::get({1}, builder.getI64Type()),
                                     ArrayRef<::mlir::Attribute>{builder.getI64IntegerAttr(0)});
  OpBuilder detached(builder.getContext());  // inserted by the symbol table below, under a name of its own
  auto global = detached.create<memref::GlobalOp>(loc, "kiln_calls", builder.getStringAttr("private"), counterType,
                                                  zero, /*constant=*/false, /*alignment=*/IntegerAttr{});
  SymbolTable(module).insert(global);  // kiln_calls, kiln_calls_0, ...: one per Linear
  Value counter = builder.create<memref::GetGlobalOp>(loc, counterType, global.getSymName());
  Value one = builder.create<arith::ConstantIntOp>(loc, 1, 64);
  Value index0 = builder.create<arith::ConstantIndexOp>(loc, 0);
  Value before = builder.create<memref::AtomicRMWOp>(loc, arith::AtomicRMWKind::addi, one, counter, ValueRange{index0});
  return builder.create<arith::TruncIOp>(loc, builder.getI1Type(), before);
}

// The k loop of a broadcast tile (ContractionToVector's broadcastTile): x[rows, k] * W^T[k, cols] summed over k in
// [0, kEnd) by kStep from zero, in `sets` sets of mb x vectors accumulators (set s > 0 reads row setRows[s - 1] at
// k + setK[s - 1]). W^T is a [K, N] matrix, or the packed weights' panel that starts at panelStart. With
// aheadStart, each k prefetches into L2 the packed weights at min(aheadStart + k * kAheadFloats, aheadEnd).
// The last vector has lastLanes columns: a matrix's are read masked (past them, its last row would read past its
// end), a panel's are zero past them.
struct BroadcastLoop {
  Location loc;
  int64_t K, mb, vectors, sets;
  Value a;                             // x, [M, K]
  Value matrix;                        // W^T as a matrix, read at `cols`; or
  Value panels, panelStart;            // the packed weights and where the tile's panel starts
  SmallVector<Value> cols;
  Value aheadStart = {}, aheadEnd = {};
  int64_t lastLanes = kLanes;

  static VectorType lanes(OpBuilder& b) { return VectorType::get({kLanes}, b.getF32Type()); }
  static Value index(OpBuilder& b, Location loc, int64_t v) { return b.create<arith::ConstantIndexOp>(loc, v); }

  // acc + x[xRows, k] * W^T[k, cols], for one k.
  SmallVector<Value> step(OpBuilder& b, Value k, ValueRange acc, ArrayRef<Value> xRows) const {
    SmallVector<Value> w, next;
    if (matrix)
      for (int64_t v = 0; v < vectors; ++v) w.push_back(matrixVector(b, k, v));
    else {  // the panel's row k: panelStart + k * 16 * vectors
      Value row = b.create<arith::AddIOp>(loc, panelStart, b.create<arith::MulIOp>(loc, k, index(b, loc, vectors * kLanes)));
      for (int64_t v = 0; v < vectors; ++v) {
        Value at = v == 0 ? row : b.create<arith::AddIOp>(loc, row, index(b, loc, v * kLanes)).getResult();
        w.push_back(b.create<vector::LoadOp>(loc, lanes(b), panels, ValueRange{at}));
      }
    }
    for (int64_t r = 0; r < mb; ++r) {
      Value x = b.create<vector::BroadcastOp>(loc, lanes(b), b.create<memref::LoadOp>(loc, a, ValueRange{xRows[r], k}));
      for (int64_t v = 0; v < vectors; ++v) next.push_back(b.create<vector::FMAOp>(loc, x, w[v], acc[r * vectors + v]));
    }
    if (aheadStart) {
      Value at = b.create<arith::AddIOp>(loc, aheadStart, b.create<arith::MulIOp>(loc, k, index(b, loc, kAheadFloats)));
      b.create<memref::PrefetchOp>(loc, panels, ValueRange{b.create<arith::MinUIOp>(loc, at, aheadEnd)},
                                   /*isWrite=*/false, /*localityHint=*/2, /*isDataCache=*/true);
    }
    return next;
  }

  // W^T[k, cols[v]:+16] of the matrix, zero past lastLanes in the last vector.
  Value matrixVector(OpBuilder& b, Value k, int64_t v) const {
    if (v + 1 < vectors || lastLanes == kLanes)
      return b.create<vector::LoadOp>(loc, lanes(b), matrix, ValueRange{k, cols[v]});
    Value mask = b.create<vector::CreateMaskOp>(loc, VectorType::get({kLanes}, b.getI1Type()),
                                                ValueRange{index(b, loc, lastLanes)});
    Value zeros = b.create<arith::ConstantOp>(loc, DenseElementsAttr::get(lanes(b), 0.0f));
    return b.create<vector::MaskedLoadOp>(loc, lanes(b), matrix, ValueRange{k, cols[v]}, mask, zeros);
  }

  // The loop, here: sets * mb * vectors sums.
  SmallVector<Value> build(OpBuilder& b, ArrayRef<Value> rows, ArrayRef<Value> setRows, ArrayRef<Value> setK,
                           Value kEnd, Value kStep) const {
    const int64_t n = mb * vectors;
    Value zeros = b.create<arith::ConstantOp>(loc, DenseElementsAttr::get(lanes(b), 0.0f));
    auto loop = b.create<scf::ForOp>(loc, index(b, loc, 0), kEnd, kStep, SmallVector<Value>(sets * n, zeros),
                                     [&](OpBuilder& bld, Location, Value k, ValueRange acc) {
                                       SmallVector<Value> next = step(bld, k, acc.take_front(n), rows);
                                       for (int64_t s = 1; s < sets; ++s)
                                         next.append(step(bld, bld.create<arith::AddIOp>(loc, k, setK[s - 1]),
                                                          acc.slice(s * n, n), setRows[s - 1]));
                                       bld.create<scf::YieldOp>(loc, next);
                                     });
    return SmallVector<Value>(loop.getResults());
  }

  // The loop as a call of a function that runs it, one per module and tile shape (its name gives K, rows,
  // vectors and sets), internal and not inlined: Linears of one shape share its code, which LLVM then optimizes
  // and compiles once (the 13-layer network's four Linear(512, 512) had four copies). From kOutlineK on, a tile
  // spends thousands of cycles in the loop, against tens for the call and its sums' return through memory.
  // Nothing (the caller builds the loop itself) where the module's function of that name takes other types.
  std::optional<SmallVector<Value>> call(OpBuilder& b, ArrayRef<Value> rows, ArrayRef<Value> setRows,
                                         ArrayRef<Value> setK, Value kEnd, Value kStep) const {
    SmallVector<Value> args{a, panels, panelStart};
    if (aheadStart) args.append({aheadStart, aheadEnd});
    args.append(rows.begin(), rows.end());
    if (sets > 1) {
      args.append(setRows.begin(), setRows.end());
      args.append(setK.begin(), setK.end());
      args.append({kEnd, kStep});
    }
    std::string name = "kiln_tile_" + std::to_string(mb) + "x" + std::to_string(vectors) + "_k" + std::to_string(K);
    if (sets > 1) name.append("_").append(std::to_string(sets)).append("sets");
    if (aheadStart) name.append("_ahead");
    auto module = b.getInsertionBlock()->getParentOp()->getParentOfType<ModuleOp>();
    auto fn = module.lookupSymbol<func::FuncOp>(name);
    if (!fn) fn = outline(module, name, ValueRange(args).getTypes());
    if (fn.getFunctionType().getInputs() != ValueRange(args).getTypes()) return std::nullopt;
    return SmallVector<Value>(b.create<func::CallOp>(loc, fn, args).getResults());
  }

  // The function, at the end of the module, the tile functions in the order of their names (whichever Linear
  // the greedy rewriter takes first, the module's text is the same).
  func::FuncOp outline(ModuleOp module, StringRef name, TypeRange argTypes) const {
    OpBuilder b(module.getBodyRegion());
    b.setInsertionPointToEnd(module.getBody());
    for (func::FuncOp other : module.getOps<func::FuncOp>())
      if (other.getSymName().starts_with("kiln_tile_") && other.getSymName() > name) {
        b.setInsertionPoint(other);
        break;
      }
    const SmallVector<Type> results(sets * mb * vectors, lanes(b));
    auto fn = b.create<func::FuncOp>(loc, name, b.getFunctionType(argTypes, results));
    fn.setPrivate();
    fn->setAttr("no_inline", b.getUnitAttr());
    fn->setAttr("llvm.linkage", LLVM::LinkageAttr::get(b.getContext(), LLVM::Linkage::Internal));
    b.setInsertionPointToStart(fn.addEntryBlock());
    const auto args = fn.getArguments();
    BroadcastLoop inside = *this;
    inside.a = args[0], inside.panels = args[1], inside.panelStart = args[2];
    const int64_t first = aheadStart ? 5 : 3;  // the first row's argument
    if (aheadStart) inside.aheadStart = args[3], inside.aheadEnd = args[4];
    const SmallVector<Value> rows(args.slice(first, mb));
    const int64_t more = sets - 1, bounds = first + mb + 2 * more;  // the other sets' rows and k, then kEnd and kStep
    const SmallVector<Value> setRows(args.slice(first + mb, more)), setK(args.slice(first + mb + more, more));
    b.create<func::ReturnOp>(loc, inside.build(b, rows, setRows, setK, sets > 1 ? args[bounds] : index(b, loc, K),
                                               sets > 1 ? args[bounds + 1] : index(b, loc, 1)));
    return fn;
  }
};

struct ContractionToVector : OpRewritePattern<linalg::MatmulTransposeBOp> {
  ContractionToVector(MLIRContext* ctx, RegisterTiles tiles, int64_t l2Bytes)
      : OpRewritePattern(ctx), broadcastVectors(tiles.panelColumns / kLanes), dotLanes(tiles.dotLanes),
        l2Bytes(l2Bytes) {}
  int64_t broadcastVectors;  // vectors of kLanes columns in a broadcast tile
  int64_t dotLanes;          // lanes of a dot-product tile's partial sums
  int64_t l2Bytes;           // the target's L2 cache

  LogicalResult matchAndRewrite(linalg::MatmulTransposeBOp mm, PatternRewriter& rewriter) const override {
    if (!mm.hasPureBufferSemantics()) return failure();
    Value a = mm.getDpsInputOperand(0)->get(), b = mm.getDpsInputOperand(1)->get(), c = mm.getDpsInitOperand(0)->get();
    auto aType = cast<MemRefType>(a.getType()), bType = cast<MemRefType>(b.getType());
    if (!aType.getLayout().isIdentity() || !bType.hasStaticShape() || aType.isDynamicDim(1)) return failure();
    // The product must start from zero (a linalg.fill of 0 into c, before it). Its epilogue is fused when
    // that is the product's only reader; with other readers (views of c, ...) the product is written to c.
    linalg::FillOp fill;
    linalg::GenericOp epilogue;
    bool otherReaders = false;
    for (Operation* user : c.getUsers()) {
      if (user == mm.getOperation() || isa<memref::DeallocOp>(user)) continue;
      if (auto f = dyn_cast<linalg::FillOp>(user); f && user->isBeforeInBlock(mm) && matchPattern(f.value(), m_AnyZeroFloat())) {
        if (fill) return failure();
        fill = f;
        continue;
      }
      if (auto g = dyn_cast<linalg::GenericOp>(user); g && !epilogue && user->getBlock() == mm->getBlock() &&
                                                        mm->isBeforeInBlock(user) && isEpilogue(g, c)) {
        epilogue = g;
        continue;
      }
      // Any other reader comes after the matmul: in its block, or inside an op there (the tiles of another
      // matmul whose epilogue reads this product, in a Sum of two Linears).
      Operation* reader = mm->getBlock()->findAncestorOpInBlock(*user);
      if (!reader || !mm->isBeforeInBlock(reader)) return failure();
      otherReaders = true;
    }
    if (!fill) return failure();
    // The tiles run where the epilogue is, so nothing between the matmul and its epilogue may write memory the
    // matmul reads: allocating, and writing only buffers allocated here (BatchNorm1d's per-channel scale and
    // shift, which the epilogue reads), are fine. If something else writes (another branch of a graph network),
    // the product is written to c and the epilogue runs on its own.
    bool fuse = epilogue && !otherReaders;
    for (Operation* op = mm->getNextNode(); fuse && op != epilogue.getOperation(); op = op->getNextNode())
      fuse = isMemoryEffectFree(op) || isa<memref::AllocOp>(op) || writesOnlyNewBuffers(op);
    if (!fuse) epilogue = nullptr;

    Location loc = mm.getLoc();
    const int64_t K = aType.getDimSize(1), N = bType.getDimSize(0);
    // The kernel's packed weights (lowering.hpp), packedAt floats into them: W^T in panels for broadcast tiles, or
    // chunks for dot-product tiles where N <= kDotOut.
    auto offset = mm->getAttrOfType<IntegerAttr>(kPackedOffset);
    Value packed = offset ? packedArgument(mm) : Value{};
    if (!packed) return failure();
    const int64_t packedAt = offset.getInt();
    // The dot-product tiles run the epilogue on vector<N> rows, one copy of it per row of the tile: a costly one
    // (GELU, ...) runs instead, once, on rows of the product the tiles wrote to c, once a block of rows is done
    // (while it is in cache). Not with a short K, where that pass costs as much as the product.
    const bool dots = N <= kDotOut;
    const bool lateEpilogue = dots && epilogue && K > kShortK && isCostlyEpilogue(epilogue);
    Value out = epilogue ? epilogue.getDpsInitOperand(0)->get() : c;
    rewriter.setInsertionPoint(epilogue ? epilogue.getOperation() : mm.getOperation());
    TileEmitter emit{rewriter, loc, a, b, c, lateEpilogue ? c : out, lateEpilogue ? nullptr : epilogue, K,
                     broadcastVectors, dotLanes};
    TileEmitter late{rewriter, loc, a, b, c, out, epilogue, K, broadcastVectors, dotLanes};
    Value M = rewriter.create<memref::DimOp>(loc, a, 0);
    if (dots) {
      emit.dotProducts(M, N, packed, packedAt, lateEpilogue ? &late : nullptr);
    } else {
      // A costly epilogue runs once per tile, in a loop over the rows of a scratch tile, instead of once per
      // vector (24 copies of Tanh's polynomial per Linear made the 13-layer network's compile 25% longer).
      if (emit.epilogue && isCostlyEpilogue(emit.epilogue)) emit.scratch = scratchTile(rewriter, mm, broadcastVectors);
      // Large weights in two column blocks or more: every other call takes the blocks last to first.
      const bool alternateBlocks = K * N >= kAlternateFloats && N / (broadcastVectors * kLanes) >= 2;
      const int64_t panelsEnd = packedAt + K * ((N + kLanes - 1) / kLanes * kLanes);
      const TileEmitter::Weights panels{
          .panels = packed, .panelsAt = packedAt, .panelsEnd = panelsEnd, .prefetch = !weightsStayInL2(packed)};
      emit.broadcastColumns(M, N, panels, alternateBlocks ? alternateCalls(rewriter, loc) : Value{});
    }
    if (epilogue) rewriter.eraseOp(epilogue);
    rewriter.eraseOp(mm);
    rewriter.eraseOp(fill);
    return success();
  }

  // A broadcast tile's f32 buffer on the stack ([6, 64] or [6, 16]), allocated at the function's entry (not in a
  // loop, where every iteration would take more stack).
  static Value scratchTile(PatternRewriter& rewriter, Operation* op, int64_t vectors) {
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(&op->getParentOfType<func::FuncOp>().getBody().front());
    auto type = MemRefType::get({kBroadcastRows, vectors * kLanes}, rewriter.getF32Type());
    return rewriter.create<memref::AllocaOp>(op->getLoc(), type, rewriter.getI64IntegerAttr(64));
  }

  // Whether all of the packed weights stay in L2 from one block of rows to the next, beside the values of the
  // eval entry point's block of rows (a quarter of L2, entry_points.cpp): then no tile prefetches (kAheadFloats).
  bool weightsStayInL2(Value packed) const {
    auto type = cast<MemRefType>(packed.getType());
    return type.hasStaticShape() && 4 * type.getNumElements() * static_cast<int64_t>(sizeof(float)) <= 3 * l2Bytes;
  }

  // The packed weights (build_network.cpp): the argument of op's function marked kPackedArgument; null if none.
  static Value packedArgument(Operation* op) {
    auto fn = op->getParentOfType<func::FuncOp>();
    for (unsigned i = 0; fn && i < fn.getNumArguments(); ++i)
      if (fn.getArgAttr(i, kPackedArgument)) return fn.getArgument(i);
    return {};
  }

  struct TileEmitter {
    PatternRewriter& rewriter;
    Location loc;
    Value a, b, c, out;
    linalg::GenericOp epilogue;
    int64_t K;
    int64_t broadcastVectors;  // vectors of kLanes columns in a broadcast tile
    int64_t dotLanes = kLanes;  // lanes of a dot-product tile's partial sums
    Value scratch = {};  // if set, broadcast tiles run their epilogue in a loop over this tile

    Value index(int64_t v) { return rewriter.create<arith::ConstantIndexOp>(loc, v); }
    // base + d, without an add for d = 0.
    Value offset(Value base, int64_t d) { return d == 0 ? base : rewriter.create<arith::AddIOp>(loc, base, index(d)); }
    VectorType dotVector() { return VectorType::get({dotLanes}, rewriter.getF32Type()); }

    // The epilogue on rows [begin, end) of the product in c, 16 columns at a time (and the last N % 16 at once).
    void epilogueRows(Value begin, Value end, int64_t N) {
      auto rows = rewriter.create<scf::ForOp>(loc, begin, end, index(1));
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(rows.getBody());
      Value i = rows.getInductionVar();
      auto apply = [&](Value j, int64_t nb) {
        Value product = rewriter.create<vector::LoadOp>(loc, VectorType::get({nb}, rewriter.getF32Type()), c, ValueRange{i, j});
        rewriter.create<vector::StoreOp>(loc, applyEpilogue(product, i, j, nb), out, ValueRange{i, j});
      };
      const int64_t nVector = N - N % kLanes;
      if (nVector > 0) {
        auto cols = rewriter.create<scf::ForOp>(loc, index(0), index(nVector), index(kLanes));
        OpBuilder::InsertionGuard inner(rewriter);
        rewriter.setInsertionPointToStart(cols.getBody());
        apply(cols.getInductionVar(), kLanes);
      }
      if (N % kLanes) apply(index(nVector), N % kLanes);
    }

    // Outputs [i, i + mb) x [0, N), N <= kDotOut, from the packed chunks at `at` in `packed` (lowering.hpp), as the
    // expression-template kernel's linear_dot_tile: row r's accumulator holds, lane o * c + j, output o's products
    // with inputs j, j + c, j + 2c, ...; its x is a chunk of c inputs repeated across the vector, and each vector
    // of weights serves every row of the tile. The sums of up to c rows come out of one tree of shuffles and adds
    // (groupSums), its last stage leaving them in row order (lane r * P + o); a row is a slice of it. Linear(32, 4)
    // on Zen 4 (kiln_layers_jit_vs_et, batch 256 and 4096): 1.09 and 17.2 us in 4 x 4 tiles of a vector along K per
    // (row, output), 1.06-1.07 and 16.5-16.9 so; with a shuffle per row to pick its lanes, 1.14 and 18.0.
    void chunkTile(Value i, int64_t mb, int64_t N, Value packed, int64_t at) {
      const int64_t P = dotChunkOutputs(N), c = dotLanes / P, kFull = K - K % c;
      SmallVector<Value> rows;
      for (int64_t r = 0; r < mb; ++r) rows.push_back(offset(i, r));
      auto chunkType = VectorType::get({c}, rewriter.getF32Type());
      Value zeroChunk = rewriter.create<arith::ConstantOp>(loc, DenseElementsAttr::get(chunkType, 0.0f));
      Value zeroVec = rewriter.create<arith::ConstantOp>(loc, DenseElementsAttr::get(dotVector(), 0.0f));
      SmallVector<int64_t> repeat;
      for (int64_t l = 0; l < dotLanes; ++l) repeat.push_back(l % c);
      auto fmaStep = [&](OpBuilder& bld, Value k, ValueRange acc, Value mask) {
        Value chunkAt = bld.create<arith::MulIOp>(loc, k, bld.create<arith::ConstantIndexOp>(loc, P));
        Value wAt = bld.create<arith::AddIOp>(loc, bld.create<arith::ConstantIndexOp>(loc, at), chunkAt);
        Value w = bld.create<vector::LoadOp>(loc, dotVector(), packed, ValueRange{wAt});
        SmallVector<Value> next;
        for (int64_t r = 0; r < mb; ++r) {
          Value x = mask ? bld.create<vector::MaskedLoadOp>(loc, chunkType, a, ValueRange{rows[r], k}, mask, zeroChunk)
                         : bld.create<vector::LoadOp>(loc, chunkType, a, ValueRange{rows[r], k}).getResult();
          if (c < dotLanes) x = bld.create<vector::ShuffleOp>(loc, x, x, repeat);
          next.push_back(bld.create<vector::FMAOp>(loc, x, w, acc[r]));
        }
        return next;
      };
      // One row takes its chunks round kOneRowSets accumulators, summed after the loop: as many FMA chains.
      const int64_t sets = mb == 1 ? kOneRowSets : 1, kSets = kFull - kFull % (sets * c);
      SmallVector<Value> acc(mb * sets, zeroVec);
      if (kSets > 0) {
        auto body = [&](OpBuilder& bld, Location, Value k, ValueRange iter) {
          SmallVector<Value> next;
          for (int64_t s = 0; s < sets; ++s) {
            Value ks = bld.create<arith::AddIOp>(loc, k, bld.create<arith::ConstantIndexOp>(loc, s * c));
            next.append(fmaStep(bld, ks, iter.slice(s * mb, mb), Value{}));
          }
          bld.create<scf::YieldOp>(loc, next);
        };
        auto loop = rewriter.create<scf::ForOp>(loc, index(0), index(kSets), index(sets * c), acc, body);
        acc = SmallVector<Value>(loop.getResults().begin(), loop.getResults().end());
      }
      if (sets > 1) {  // mb == 1: (set 0 + set 1) + (set 2 + set 3)
        static_assert(kOneRowSets == 4, "the sets' sum adds four");
        acc = {rewriter.create<arith::AddFOp>(loc, rewriter.create<arith::AddFOp>(loc, acc[0], acc[1]),
                                              rewriter.create<arith::AddFOp>(loc, acc[2], acc[3]))};
      }
      for (int64_t k = kSets; k < kFull; k += c) acc = fmaStep(rewriter, index(k), acc, Value{});
      if (K % c) {
        Value mask = rewriter.create<vector::ConstantMaskOp>(loc, VectorType::get({c}, rewriter.getI1Type()),
                                                             rewriter.getI64ArrayAttr({K % c}));
        acc = fmaStep(rewriter, index(kFull), acc, mask);
      }
      SmallVector<int64_t> byRow;  // lane r * P + o takes group_sums' lane o * c + r
      for (int64_t m = 0; m < dotLanes; ++m) byRow.push_back(m % P * c + m / P);
      for (int64_t g = 0; g < mb; g += c) {
        const int64_t n = std::min(c, mb - g);
        Value sums = groupSums(ArrayRef<Value>(acc).slice(g, n), c, byRow);
        for (int64_t r = 0; r < n; ++r) {
          Value row = rewriter.create<vector::ExtractStridedSliceOp>(loc, sums, ArrayRef<int64_t>{r * P},
                                                                     ArrayRef<int64_t>{N}, ArrayRef<int64_t>{1});
          if (epilogue) row = applyEpilogue(row, rows[g + r], index(0), N);
          rewriter.create<vector::StoreOp>(loc, row, out, ValueRange{rows[g + r], index(0)});
        }
      }
    }

    // Sums within groups of g lanes of v's vectors (at most g of them): lane k * g + j of the sums is the sum of
    // v[j]'s lanes [k * g, k * g + g) (the expression-template kernel's group_sums); lane m of the result is lane
    // order[m] of them, the order applied by the last stage's shuffles.
    Value groupSums(ArrayRef<Value> accs, int64_t g, ArrayRef<int64_t> order) {
      SmallVector<Value> v(accs);
      for (int64_t b = g / 2; b >= 1; b /= 2) {
        // Lanes with bit b clear from the first vector, set from the second; or, where there is no second, v's
        // lanes with bit b flipped and v itself.
        SmallVector<int64_t> low, high, swapped, same;
        for (int64_t m = 0; m < dotLanes; ++m) {
          const int64_t l = b == 1 ? order[m] : m;
          low.push_back((l & b) == 0 ? l : l - b + dotLanes);
          high.push_back((l & b) == 0 ? l + b : l + dotLanes);
          swapped.push_back(l ^ b);
          same.push_back(l);
        }
        const int64_t live = static_cast<int64_t>(v.size());
        for (int64_t r = 0; r < std::min(b, live); ++r) {
          const bool pair = r + b < live;
          Value second = pair ? v[r + b] : v[r];
          Value lo = rewriter.create<vector::ShuffleOp>(loc, v[r], second, pair ? low : swapped);
          Value hi = rewriter.create<vector::ShuffleOp>(loc, v[r], second, pair ? high : same);
          v[r] = rewriter.create<arith::AddFOp>(loc, lo, hi);
        }
        v.resize(std::min(b, live));
      }
      return v[0];
    }

    // Outputs [0, N), N <= kDotOut, for every row: rows in blocks that stay in L2 (kL2Floats), in tiles of
    // kChunkRows, then the last rows one at a time; with `late`, its epilogue on each block once its tiles are done.
    void dotProducts(Value M, int64_t N, Value packed, int64_t at, TileEmitter* late) {
      const int64_t blockRows =
          std::max<int64_t>(kChunkRows, kL2Floats / std::max<int64_t>(K, 1) / kChunkRows * kChunkRows);
      auto tiles = [&](Value begin, Value end, int64_t mb) {
        auto rows = rewriter.create<scf::ForOp>(loc, begin, end, index(mb));
        OpBuilder::InsertionGuard guard(rewriter);
        rewriter.setInsertionPointToStart(rows.getBody());
        chunkTile(rows.getInductionVar(), mb, N, packed, at);
      };
      Value mFull = rewriter.create<arith::SubIOp>(loc, M, rewriter.create<arith::RemUIOp>(loc, M, index(kChunkRows)));
      auto blocks = rewriter.create<scf::ForOp>(loc, index(0), mFull, index(blockRows));
      {
        OpBuilder::InsertionGuard guard(rewriter);
        rewriter.setInsertionPointToStart(blocks.getBody());
        Value first = blocks.getInductionVar();
        Value blockEnd = rewriter.create<arith::AddIOp>(loc, first, index(blockRows));
        Value end = rewriter.create<arith::MinUIOp>(loc, blockEnd, mFull);
        tiles(first, end, kChunkRows);
        if (late) late->epilogueRows(first, end, N);
      }
      tiles(mFull, M, 1);
      if (late) late->epilogueRows(mFull, M, N);
    }

    // Where a broadcast tile reads W^T[k, j:j+16]: a [K, cols] row-major matrix (Bilinear's A[o]), or the packed
    // weights' panels (lowering.hpp, kPanelColumns), which start `panelsAt` floats into the 1-D `panels`.
    struct Weights {
      Value matrix = {};
      Value panels = {};
      int64_t panelsAt = 0, panelsEnd = 0;
      bool prefetch = false;  // 6-row tiles prefetch the next panel
    };
    // The panel a 6-row tile prefetches a share of: its row block's first row, and the panel's first column (in
    // the order the column blocks run: the next one).
    struct NextPanel {
      Value blockBegin, cols;  // null: none
    };
    // Rows [begin, end) in tiles of mb rows (with `pair`, a one-row tile's: see broadcastTile).
    struct RowRange {
      Value begin, end;
      int64_t mb;
      Value pair;
    };

    // Columns [0, nCols) of a [M, K] x [K, nCols] product, bt being the [K, nCols] operand (a matrix is read
    // masked past nCols, packed panels are zero past it, and the lanes past it are not stored): rows in blocks that
    // stay in L2 while every column block passes (last to first on the calls where `reverse` is true), in tiles of 6
    // rows x broadcastVectors vectors of 16 columns. A block's last tile, if fewer than 6 rows are left, ends at the
    // block's end: it computes again rows the tile before computed (the same sums, stored again), and with fewer
    // than 6 rows in all, its missing rows repeat the last: a 6-row pass over the weights where the ET kernel has a
    // tile of just the 3 to 5 rows left (tiles of each size would add to the code LLVM compiles). One row left over
    // takes a one-row tile, two rows one one-row tile whose sets of accumulators take the two rows in turn: less
    // than a 6-row pass; on packed panels, in the last block of rows, each column block's after its 6-row tiles. On
    // a matrix (Bilinear's), 3 or 4 rows left take a 3-row tile, then the one-row tile, after all the blocks.
    void broadcastColumns(Value M, int64_t nCols, const Weights& bt, Value reverse = {}) {
      const int64_t lastLanes = nCols % kLanes == 0 ? kLanes : nCols % kLanes;  // the outputs of the last vector
      // Each column block of tileVectors vectors of 16 columns, through each range of rows in turn.
      auto columns = [&](ArrayRef<RowRange> ranges, int64_t tileVectors) {
        const int64_t width = tileVectors * kLanes, blocks = nCols / width;
        const int64_t rest = (nCols % width + kLanes - 1) / kLanes;  // vectors of a last, narrower tile
        auto rowLoop = [&](const RowRange& range, Value first, Value next, int64_t vectors, int64_t lanes) {
          auto [rowBegin, rowEnd, mb, pair] = range;
          Value step = pair ? rewriter.create<arith::SelectOp>(loc, pair, index(2), index(1)).getResult() : index(mb);
          auto rows = rewriter.create<scf::ForOp>(loc, rowBegin, rowEnd, step);
          OpBuilder::InsertionGuard guard(rewriter);
          rewriter.setInsertionPointToStart(rows.getBody());
          Value i = rows.getInductionVar(), last = {};
          if (mb > 1) {  // the tile at min(i, max(rowEnd, mb) - mb), its rows at most rowEnd - 1
            Value lastStart = rewriter.create<arith::SubIOp>(loc, rewriter.create<arith::MaxUIOp>(loc, rowEnd, index(mb)), index(mb));
            i = rewriter.create<arith::MinUIOp>(loc, i, lastStart);
            last = rewriter.create<arith::SubIOp>(loc, rowEnd, index(1));
          }
          broadcastTile(i, mb, first, vectors, lanes, bt, last, pair, NextPanel{rowBegin, next});
        };
        if (blocks > 0) {
          auto loop = rewriter.create<scf::ForOp>(loc, index(0), index(blocks * width), index(width));
          OpBuilder::InsertionGuard guard(rewriter);
          rewriter.setInsertionPointToStart(loop.getBody());
          // The block's first column and the next block's (past the blocks: the narrower tile's, or none).
          Value first = loop.getInductionVar(), next = offset(first, width);
          if (reverse) {  // (blocks - 1) * width - first
            auto backwards = [&](Value col) -> Value {
              return rewriter.create<arith::SubIOp>(loc, index((blocks - 1) * width), col);
            };
            Value nextIsBlock = rewriter.create<arith::AndIOp>(
                loc, reverse,
                rewriter.create<arith::CmpIOp>(loc, arith::CmpIPredicate::ult, next, index(blocks * width)));
            first = rewriter.create<arith::SelectOp>(loc, reverse, backwards(first), first);
            next = rewriter.create<arith::SelectOp>(loc, nextIsBlock, backwards(next), next);
          }
          if (blocks + (rest > 0) == 1) next = {};  // the only block: no next
          for (const RowRange& range : ranges) rowLoop(range, first, next, tileVectors, kLanes);
        }
        if (rest > 0)  // last in either order: no next
          for (const RowRange& range : ranges) rowLoop(range, index(blocks * width), Value{}, rest, lastLanes);
      };
      // Rows [0, mTiles) in 6-row tiles: all but the last one or two, which one-row tiles take for less. On a
      // matrix (Bilinear's A[o], in L2 from one o to the next, so that a pass costs its FMAs more than its reads),
      // all but the last 1 to 4, of which a 3-row tile takes the first 3 where there are. Bilinear(64, 48, 32) on
      // the Intel Xeon, us at batch 3 / 4 / 9: 6.6-7.2 / 6.8-7.2 / 13.0-15.4 in 6-row passes, 4.2-4.5 / 5.8-6.4 /
      // 10.5-11.2 so (the ET kernel 4.1-4.4 / 5.0-5.8 / 10.3-11.2); with 5 left, a 3-row tile and a pair of rows
      // took longer than one 6-row pass (batch 5: 7.0-7.4 against 6.9-7.1).
      Value left = rewriter.create<arith::RemUIOp>(loc, M, index(kBroadcastRows));
      Value fewLeft = rewriter.create<arith::CmpIOp>(loc, arith::CmpIPredicate::ule, left, index(bt.matrix ? 4 : 2));
      Value mTiles = rewriter.create<arith::SelectOp>(loc, fewLeft, rewriter.create<arith::SubIOp>(loc, M, left), M);
      const int64_t blockRows = std::max<int64_t>(1, kL2Floats / std::max<int64_t>(K, 1) / kBroadcastRows) * kBroadcastRows;
      // A one-row tile takes one row left, or two (`pair`: its sets of accumulators take the two rows in turn).
      auto pairFrom = [&](Value oneRows) -> Value {
        if (K < 2) return {};
        Value oneRowsLeft = rewriter.create<arith::SubIOp>(loc, M, oneRows);
        return rewriter.create<arith::CmpIOp>(loc, arith::CmpIPredicate::eq, oneRowsLeft, index(2));
      };
      // The blocks of rows. On packed panels, the rows past the 6-row tiles go with the last block, column block by
      // column block, while each panel is in L2: after all the blocks, they read every panel again, from beyond L2
      // where the weights do not stay there (Intel Xeon, JIT us at batch 8 / 14, best of 7 loops: two
      // Linear(512, 512) 63-66 / 98-100 -> 58-59 / 84-91, the ET kernel 50-54 / 78-84; mlp_norm at 8 147-148 ->
      // 136-139). With no 6-row tile (M < 6) the loop still runs once, for them.
      Value tailPair = bt.panels ? pairFrom(mTiles) : Value{};
      Value blocksEnd = bt.panels ? rewriter.create<arith::MaxUIOp>(loc, mTiles, index(1)).getResult() : mTiles;
      auto rowBlocks = rewriter.create<scf::ForOp>(loc, index(0), blocksEnd, index(blockRows));
      {
        OpBuilder::InsertionGuard guard(rewriter);
        rewriter.setInsertionPointToStart(rowBlocks.getBody());
        Value begin = rowBlocks.getInductionVar();
        Value end = rewriter.create<arith::MinUIOp>(
            loc, rewriter.create<arith::AddIOp>(loc, begin, index(blockRows)), mTiles);
        SmallVector<RowRange, 2> ranges{RowRange{begin, end, kBroadcastRows, {}}};
        if (bt.panels) {
          Value lastBlock = rewriter.create<arith::CmpIOp>(loc, arith::CmpIPredicate::eq, end, mTiles);
          ranges.push_back(RowRange{rewriter.create<arith::SelectOp>(loc, lastBlock, mTiles, M), M, 1, tailPair});
        }
        columns(ranges, broadcastVectors);
      }
      if (bt.panels) return;
      // On a matrix, a 3-row tile at mTiles where 3 or 4 rows are left (a loop of one step or none), then the
      // one-row tile. That is wider, its two sets as many accumulators as a 6-row tile's: one pass along A's rows,
      // where one-vector tiles (AVX2) read a strip of 16 columns in each of nCols / 16 passes (Bilinear(64, 48, 32)
      // at batch 1 on Zen 3: 5.0-5.4 -> 4.7 us).
      Value threeLeft = rewriter.create<arith::CmpIOp>(loc, arith::CmpIPredicate::uge,
                                                       rewriter.create<arith::SubIOp>(loc, M, mTiles), index(3));
      Value oneRows = rewriter.create<arith::AddIOp>(
          loc, mTiles, rewriter.create<arith::SelectOp>(loc, threeLeft, index(3), index(0)));
      columns({RowRange{mTiles, oneRows, 3, {}}}, broadcastVectors);
      columns({RowRange{oneRows, M, 1, pairFrom(oneRows)}}, kBroadcastRows * broadcastVectors / 2);
    }

    // A tile of mb rows x `vectors` vectors of 16 columns. One row takes its k round 4 sets of accumulators, for
    // 4 independent FMA chains per vector (as the expression-template kernel's one-row tile), or 2: where 4 would
    // hold more accumulators than a 6-row tile (Bilinear's wider one-row tile), and from kOutlineK on, where the
    // weights stream from L2 or beyond and the chains' length hides behind them (4 sets there made batch 1 slower on
    // Zen 4 in kiln_vs_torch: mlp_norm 36.4-36.6 -> 41.6-42.3 us, resmlp 25.7-26.9 -> 29.1-29.3). Where `pair` (a
    // one-row tile's only) is true at run time, set s takes row i + s % 2 at k + s / 2 instead: one pass over the
    // weights for two rows, with no more code. `last`, if set: rows past it read and write row `last` instead. The
    // last vector stores its first lastLanes lanes.
    void broadcastTile(Value i, int64_t mb, Value j, int64_t vectors, int64_t lastLanes, const Weights& bt,
                       Value last = {}, Value pair = {}, NextPanel next = {}) {
      SmallVector<Value> rows, cols;
      for (int64_t r = 0; r < mb; ++r)
        rows.push_back(last && r > 0 ? rewriter.create<arith::MinUIOp>(loc, offset(i, r), last).getResult() : offset(i, r));
      for (int64_t v = 0; v < vectors; ++v) cols.push_back(offset(j, v * kLanes));
      const int64_t n = mb * vectors;
      int64_t sets = 1;
      if (mb == 1 && K >= 2) sets = K < kOutlineK && 4 * vectors <= kBroadcastRows * broadcastVectors ? 4 : 2;
      auto choose = [&](int64_t ifPair, int64_t otherwise) {
        return pair ? rewriter.create<arith::SelectOp>(loc, pair, index(ifPair), index(otherwise)).getResult() : index(otherwise);
      };
      // Set s's row and its k's distance from the first set's: i and s, or with `pair`, i + s % 2 and s / 2.
      SmallVector<Value> setRows, setK;
      for (int64_t s = 1; s < sets; ++s) {
        setRows.push_back(s % 2 ? rewriter.create<arith::AddIOp>(loc, i, choose(1, 0)).getResult() : i);
        setK.push_back(choose(s / 2, s));
      }
      // Where the panel of the column block at `col` starts in the packed weights.
      auto panelAt = [&](Value col) -> Value {
        return rewriter.create<arith::AddIOp>(loc, index(bt.panelsAt), rewriter.create<arith::MulIOp>(loc, col, index(K)));
      };
      Value panelStart = bt.panels ? panelAt(j) : Value{};
      BroadcastLoop loop{loc, K, mb, vectors, sets, a, bt.matrix, bt.panels, panelStart, cols};
      loop.lastLanes = lastLanes;
      if (bt.prefetch && next.cols && mb == kBroadcastRows) {
        // This tile's share of the next panel: the row block's tile t takes K * kAheadFloats floats from its
        // (t * K * kAheadFloats), up to the panel's end, or the weights' end (where there is none, their last line).
        const int64_t width = vectors * kLanes;
        Value tile = rewriter.create<arith::DivUIOp>(loc, rewriter.create<arith::SubIOp>(loc, i, next.blockBegin),
                                                     index(mb));
        Value panel = panelAt(next.cols);
        loop.aheadStart = rewriter.create<arith::AddIOp>(
            loc, panel, rewriter.create<arith::MulIOp>(loc, tile, index(K * kAheadFloats)));
        loop.aheadEnd = rewriter.create<arith::SubIOp>(
            loc, rewriter.create<arith::MinUIOp>(loc, offset(panel, K * width), index(bt.panelsEnd)), index(kLanes));
      }
      // Up to K - K % sets, by `sets`, or with `pair`, by sets / 2.
      Value kEnd = index(K - K % sets), kStep = sets > 1 ? choose(sets / 2, sets) : index(1);
      std::optional<SmallVector<Value>> sums;
      if (bt.panels && K >= kOutlineK) sums = loop.call(rewriter, rows, setRows, setK, kEnd, kStep);
      if (!sums) sums = loop.build(rewriter, rows, setRows, setK, kEnd, kStep);
      SmallVector<Value> storeRows = rows, stores(ArrayRef<Value>(*sums).take_front(n));
      if (sets > 1) {
        // The even sets' sums (row i) and the odd sets' (row i + 1 with `pair`, else row i too); the k past
        // K - K % sets for each. With `pair` the odd sets' row is stored first, so that without `pair` (where it is
        // row i) the sum of all sets overwrites it.
        SmallVector<Value> even(stores), odd(ArrayRef<Value>(*sums).slice(n, n)), first;
        for (int64_t s = 2; s < sets; ++s)
          for (int64_t q = 0; q < n; ++q) {
            SmallVector<Value>& parity = s % 2 ? odd : even;
            parity[q] = rewriter.create<arith::AddFOp>(loc, parity[q], (*sums)[s * n + q]);
          }
        for (int64_t q = 0; q < n; ++q) {
          Value all = rewriter.create<arith::AddFOp>(loc, even[q], odd[q]);
          first.push_back(pair ? rewriter.create<arith::SelectOp>(loc, pair, even[q], all).getResult() : all);
        }
        for (int64_t k = K - K % sets; k < K; ++k) {
          first = loop.step(rewriter, index(k), first, rows);
          if (pair) odd = loop.step(rewriter, index(k), odd, setRows.front());
        }
        stores = first;
        if (pair) {
          storeRows.insert(storeRows.begin(), setRows.front());
          stores.insert(stores.begin(), odd.begin(), odd.end());
        }
      }
      if (scratch) return storeThroughEpilogueLoop(stores, storeRows, j, vectors, lastLanes);
      for (size_t r = 0; r < storeRows.size(); ++r)
        for (int64_t v = 0; v < vectors; ++v) {
          const int64_t lanes = v + 1 == vectors ? lastLanes : kLanes;
          Value row = firstLanes(stores[r * vectors + v], lanes);
          if (epilogue) row = applyEpilogue(row, storeRows[r], cols[v], lanes);
          rewriter.create<vector::StoreOp>(loc, row, out, ValueRange{storeRows[r], cols[v]});
        }
    }

    // v's first `lanes` lanes (v itself for all 16).
    Value firstLanes(Value v, int64_t lanes) {
      if (lanes == kLanes) return v;
      return rewriter.create<vector::ExtractStridedSliceOp>(loc, v, ArrayRef<int64_t>{0}, ArrayRef<int64_t>{lanes},
                                                            ArrayRef<int64_t>{1});
    }

    // The tile's sums (rows x vectors) into the scratch tile, then the epilogue on it in a loop over its rows,
    // stored to the output at `rows`, columns [j, j + 16 * vectors), but for the last vector's lanes past lastLanes.
    void storeThroughEpilogueLoop(ArrayRef<Value> acc, ArrayRef<Value> rows, Value j, int64_t vectors,
                                  int64_t lastLanes) {
      const auto mb = static_cast<int64_t>(rows.size());
      for (int64_t r = 0; r < mb; ++r)
        for (int64_t v = 0; v < vectors; ++v)
          rewriter.create<vector::StoreOp>(loc, acc[r * vectors + v], scratch, ValueRange{index(r), index(v * kLanes)});
      // The rows' indices as a vector, which the loop indexes by its row.
      Value indices = rewriter.create<vector::FromElementsOp>(loc, VectorType::get({mb}, rewriter.getIndexType()), rows);
      OpBuilder::InsertionGuard guard(rewriter);
      auto rowLoop = rewriter.create<scf::ForOp>(loc, index(0), index(mb), index(1));
      rewriter.setInsertionPointToStart(rowLoop.getBody());
      Value r = rowLoop.getInductionVar(), row = rewriter.create<vector::ExtractElementOp>(loc, indices, r);
      auto apply = [&](Value c, int64_t width) {
        Value sums = rewriter.create<vector::LoadOp>(loc, VectorType::get({width}, rewriter.getF32Type()), scratch,
                                                     ValueRange{r, c});
        Value col = rewriter.create<arith::AddIOp>(loc, j, c);
        rewriter.create<vector::StoreOp>(loc, applyEpilogue(sums, row, col, width), out, ValueRange{row, col});
      };
      // A row's whole vectors at once, as one vector<16 * full>: LLVM splits it into `full` independent chains
      // side by side, as the expression-template kernel runs its math on packs of four vectors; then a last,
      // partial vector on its own.
      const int64_t full = lastLanes == kLanes ? vectors : vectors - 1;
      if (full > 0) apply(index(0), full * kLanes);
      if (full < vectors) apply(index(full * kLanes), lastLanes);
    }

    // The epilogue's payload on one row of the tile, as vector<nb> ops.
    Value applyEpilogue(Value product, Value row, Value col, int64_t nb) {
      IRMapping map;
      Block& body = epilogue.getRegion().front();
      for (OpOperand* in : epilogue.getDpsInputOperands()) {
        BlockArgument arg = body.getArgument(in->getOperandNumber());
        if (in->get() == c && epilogue.getMatchingIndexingMap(in).isIdentity()) {
          map.map(arg, product);
          continue;
        }
        auto element = cast<MemRefType>(in->get().getType()).getElementType();
        const bool identity = epilogue.getMatchingIndexingMap(in).isIdentity();
        SmallVector<Value> at = identity ? SmallVector<Value>{row, col} : SmallVector<Value>{col};
        map.map(arg, rewriter.create<vector::LoadOp>(loc, VectorType::get({nb}, element), in->get(), at));
      }
      return vectorizePayload(rewriter, loc, body, map, nb, [&](int64_t dim) -> Value {
        if (dim == 0) return row;
        SmallVector<int64_t> steps = llvm::to_vector(llvm::seq<int64_t>(0, nb));
        Value iota = rewriter.create<arith::ConstantOp>(
            loc, DenseElementsAttr::get(VectorType::get({nb}, rewriter.getIndexType()), llvm::ArrayRef<int64_t>(steps)));
        Value first = rewriter.create<vector::BroadcastOp>(loc, VectorType::get({nb}, col.getType()), col);
        return rewriter.create<arith::AddIOp>(loc, first, iota);
      });
    }
  };
};

// The packing's linalg.transposes (build_network.cpp): a [cols, K] block of W into its [K, cols] place in the
// packed weights, a call of kiln_transpose; or panels of them, [panels, cols, K] into [panels, K, cols], a loop
// of such calls.
struct TransposeToVector : OpRewritePattern<linalg::TransposeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::TransposeOp t, PatternRewriter& rewriter) const override {
    if (!t.hasPureBufferSemantics()) return failure();
    auto in = cast<MemRefType>(t.getInput().getType()), out = cast<MemRefType>(t.getInit().getType());
    const bool matrix = in.getRank() == 2 && t.getPermutation() == ArrayRef<int64_t>{1, 0};
    const bool panels = in.getRank() == 3 && t.getPermutation() == ArrayRef<int64_t>{0, 2, 1};
    if (!(matrix || panels) || !in.getElementType().isF32() || !in.hasStaticShape()) return failure();
    auto unitInnerStride = [](MemRefType type) {
      SmallVector<int64_t> strides;
      int64_t offset;
      return succeeded(getStridesAndOffset(type, strides, offset)) && strides.back() == 1;
    };
    if (!unitInnerStride(in) || !unitInnerStride(out)) return failure();
    constexpr int64_t kDyn = ShapedType::kDynamic;
    auto dynamic = MemRefType::get({kDyn, kDyn}, rewriter.getF32Type(),
                                   StridedLayoutAttr::get(rewriter.getContext(), kDyn, {kDyn, 1}));
    Location loc = t.getLoc();
    func::FuncOp transpose = transposeFunction(rewriter, loc, dynamic);
    auto call = [&](Value w, Value wt) {
      rewriter.create<func::CallOp>(loc, transpose, ValueRange{rewriter.create<memref::CastOp>(loc, dynamic, w),
                                                               rewriter.create<memref::CastOp>(loc, dynamic, wt)});
    };
    if (matrix) {
      call(t.getInput(), t.getInit());
    } else {
      auto index = [&](int64_t v) -> Value { return rewriter.create<arith::ConstantIndexOp>(loc, v); };
      auto loop = rewriter.create<scf::ForOp>(loc, index(0), index(in.getDimSize(0)), index(1));
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(loop.getBody());
      call(panel(rewriter, loc, t.getInput(), loop.getInductionVar()),
           panel(rewriter, loc, t.getInit(), loop.getInductionVar()));
    }
    rewriter.eraseOp(t);
    return success();
  }

  // m[p] of a [panels, rows, cols] memref, as a [rows, cols] one.
  static Value panel(PatternRewriter& rewriter, Location loc, Value m, Value p) {
    auto type = cast<MemRefType>(m.getType());
    auto index = [&](int64_t v) -> OpFoldResult { return rewriter.getIndexAttr(v); };
    const SmallVector<OpFoldResult> offsets{p, index(0), index(0)}, ones(3, index(1));
    const SmallVector<OpFoldResult> sizes{index(1), index(type.getDimSize(1)), index(type.getDimSize(2))};
    auto view = memref::SubViewOp::inferRankReducedResultType({type.getDimSize(1), type.getDimSize(2)}, type, offsets,
                                                               sizes, ones);
    return rewriter.create<memref::SubViewOp>(loc, cast<MemRefType>(view), m, offsets, sizes, ones);
  }
};

// Bilinear's first stage (build_network.cpp): T[n, o, j] = sum_i x1[n, i] A[o, i, j], a linalg.generic over
// (n, o, i, j) that reads A's rows [o, i, :] along j. For every o that is x1 [N, K] times A[o] [K, J], whose
// rows are already the layout broadcast products read: the same tiles as a short-K Linear, on views of A and T,
// with no copy of the weights (the last J % 16 columns read masked).
// Where T is read only by the second stage, both stages run in blocks of rows (rowBlocks).
struct BilinearToVector : OpRewritePattern<linalg::GenericOp> {
  BilinearToVector(MLIRContext* ctx, RegisterTiles tiles)
      : OpRewritePattern(ctx), broadcastVectors(tiles.panelColumns / kLanes) {}
  int64_t broadcastVectors;  // vectors of kLanes columns in a broadcast tile

  static bool isFirstStage(linalg::GenericOp g) {
    if (!g.hasPureBufferSemantics() || g.getNumLoops() != 4 || g.getNumDpsInputs() != 2 || g.getNumDpsInits() != 1)
      return false;
    using IT = utils::IteratorType;
    const SmallVector<IT> iterators = g.getIteratorTypesArray();
    if (iterators != SmallVector<IT>{IT::parallel, IT::parallel, IT::reduction, IT::parallel}) return false;
    auto map = [&](ArrayRef<unsigned> dims) { return AffineMap::getMultiDimMapWithTargets(4, dims, g.getContext()); };
    const SmallVector<AffineMap> maps = g.getIndexingMapsArray();
    if (maps != SmallVector<AffineMap>{map({0, 2}), map({1, 2, 3}), map({0, 1, 3})}) return false;
    // The payload: out + in0 * in1.
    Block& body = g.getRegion().front();
    auto ops = body.without_terminator();
    if (std::distance(ops.begin(), ops.end()) != 2) return false;
    auto mul = dyn_cast<arith::MulFOp>(*ops.begin());
    auto add = dyn_cast<arith::AddFOp>(*std::next(ops.begin()));
    return mul && add && add.getRhs() == mul.getResult() && add.getLhs() == body.getArgument(2) &&
           mul.getLhs() == body.getArgument(0) && mul.getRhs() == body.getArgument(1);
  }

  // The second stage, y[n, o] += sum_j T[n, o, j] x2[n, j]: a generic over (n, o, j) reading T and x2.
  static bool isSecondStage(linalg::GenericOp r, Value t) {
    if (!r.hasPureBufferSemantics() || r.getNumLoops() != 3 || r.getNumDpsInputs() != 2 || r.getNumDpsInits() != 1 ||
        r.getDpsInputOperand(0)->get() != t)
      return false;
    auto map = [&](ArrayRef<unsigned> dims) { return AffineMap::getMultiDimMapWithTargets(3, dims, r.getContext()); };
    return r.getIndexingMapsArray() == SmallVector<AffineMap>{map({0, 1, 2}), map({0, 2}), map({0, 1})};
  }

  LogicalResult matchAndRewrite(linalg::GenericOp g, PatternRewriter& rewriter) const override {
    if (!isFirstStage(g)) return failure();
    Value x1 = g.getDpsInputOperand(0)->get(), a = g.getDpsInputOperand(1)->get(), t = g.getDpsInitOperand(0)->get();
    auto xType = cast<MemRefType>(x1.getType()), aType = cast<MemRefType>(a.getType());
    auto tType = cast<MemRefType>(t.getType());
    if (!xType.getLayout().isIdentity() || !tType.getLayout().isIdentity() || !aType.hasStaticShape() ||
        xType.isDynamicDim(1))
      return failure();
    // T must start from zero (a fill of 0 before the generic, which the tiles make unnecessary: they store
    // whole sums) and have no other writer. Read only by the second stage, it becomes one row block's.
    linalg::FillOp fill;
    linalg::GenericOp second;
    bool otherReaders = false;
    for (Operation* user : t.getUsers()) {
      if (user == g.getOperation()) continue;
      if (user->getBlock() != g->getBlock()) return failure();
      if (auto f = dyn_cast<linalg::FillOp>(user); f && !fill && user->isBeforeInBlock(g) &&
                                                  matchPattern(f.value(), m_AnyZeroFloat())) {
        fill = f;
        continue;
      }
      if (auto writer = dyn_cast<linalg::LinalgOp>(user); writer && llvm::is_contained(writer.getDpsInits(), t))
        return failure();
      if (auto r = dyn_cast<linalg::GenericOp>(user); r && !second && g->isBeforeInBlock(r) && isSecondStage(r, t)) {
        second = r;
        continue;
      }
      otherReaders = true;
    }
    if (!fill) return failure();
    auto alloc = t.getDefiningOp<memref::AllocOp>();
    const bool blocked = second && alloc && !otherReaders;
    if (blocked)
      rowBlocks(g, second, alloc, rewriter);
    else
      wholeBatch(g, t, rewriter);
    rewriter.eraseOp(g);
    rewriter.eraseOp(fill);
    if (blocked) rewriter.eraseOp(alloc);  // its last users, the two stages, are gone
    return success();
  }

  // T[n, o, :] = x1[n, :] A[o] for every o, rows [0, M) of x1 and t: per o, the broadcast tiles of a short-K
  // Linear on views of A and T, with no copy of the weights.
  void firstStage(PatternRewriter& rewriter, Location loc, Value M, Value x1, Value a, Value t) const {
    auto aType = cast<MemRefType>(a.getType()), tType = cast<MemRefType>(t.getType());
    const int64_t O = aType.getDimSize(0), K = aType.getDimSize(1), J = aType.getDimSize(2);
    auto index = [&](int64_t v) -> OpFoldResult { return rewriter.getIndexAttr(v); };
    auto os = rewriter.create<scf::ForOp>(loc, rewriter.create<arith::ConstantIndexOp>(loc, 0),
                                          rewriter.create<arith::ConstantIndexOp>(loc, O),
                                          rewriter.create<arith::ConstantIndexOp>(loc, 1));
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(os.getBody());
    Value o = os.getInductionVar();
    // A[o] as [K, J] and T[:, o, :] as [M, J] (rank-reduced views, unit stride along j).
    const SmallVector<OpFoldResult> aOffsets{o, index(0), index(0)}, aSizes{index(1), index(K), index(J)};
    const SmallVector<OpFoldResult> tOffsets{index(0), o, index(0)}, tSizes{M, index(1), index(J)};
    const SmallVector<OpFoldResult> ones{index(1), index(1), index(1)};
    auto aView = memref::SubViewOp::inferRankReducedResultType({K, J}, aType, aOffsets, aSizes, ones);
    auto tView = memref::SubViewOp::inferRankReducedResultType({ShapedType::kDynamic, J}, tType, tOffsets, tSizes, ones);
    Value ao = rewriter.create<memref::SubViewOp>(loc, cast<MemRefType>(aView), a, aOffsets, aSizes, ones);
    Value to = rewriter.create<memref::SubViewOp>(loc, cast<MemRefType>(tView), t, tOffsets, tSizes, ones);
    ContractionToVector::TileEmitter emit{rewriter, loc, x1, Value{}, to, to, linalg::GenericOp{}, K, broadcastVectors};
    emit.broadcastColumns(M, J, {.matrix = ao});
  }

  // The first stage over the whole batch, into T where it is (a T read by more than the second stage).
  void wholeBatch(linalg::GenericOp g, Value t, PatternRewriter& rewriter) const {
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPoint(g);
    Value x1 = g.getDpsInputOperand(0)->get();
    Value M = rewriter.create<memref::DimOp>(g.getLoc(), x1, 0);
    firstStage(rewriter, g.getLoc(), M, x1, g.getDpsInputOperand(1)->get(), t);
  }

  // Both stages in blocks of kBilinearRows rows, where the second stage runs: T is one block's, and stays in
  // cache from the first stage to the second (for the whole batch, [N, O, J] went to memory and back: Bilinear(64,
  // 48, 32) at batch 4096 wrote and read 25 MB).
  void rowBlocks(linalg::GenericOp g, linalg::GenericOp second, memref::AllocOp alloc,
                 PatternRewriter& rewriter) const {
    OpBuilder::InsertionGuard guard(rewriter);
    Location loc = g.getLoc();
    rewriter.setInsertionPoint(second);
    Value x1 = g.getDpsInputOperand(0)->get(), a = g.getDpsInputOperand(1)->get();
    Value x2 = second.getDpsInputOperand(1)->get(), y = second.getDpsInitOperand(0)->get();
    auto tType = cast<MemRefType>(alloc.getType());
    const int64_t O = tType.getDimSize(1), J = tType.getDimSize(2);
    auto block = rewriter.create<memref::AllocOp>(loc, MemRefType::get({kBilinearRows, O, J}, tType.getElementType()),
                                                  alloc.getAlignmentAttr());
    auto cst = [&](int64_t v) -> Value { return rewriter.create<arith::ConstantIndexOp>(loc, v); };
    Value M = rewriter.create<memref::DimOp>(loc, x1, 0);
    auto blocks = rewriter.create<scf::ForOp>(loc, cst(0), M, cst(kBilinearRows));
    {
      OpBuilder::InsertionGuard inner(rewriter);
      rewriter.setInsertionPointToStart(blocks.getBody());
      Value r0 = blocks.getInductionVar();
      Value rows = rewriter.create<arith::MinUIOp>(loc, cst(kBilinearRows), rewriter.create<arith::SubIOp>(loc, M, r0));
      // Rows [r0, r0 + rows) of a [N, F] value, and the block's first `rows` rows of T.
      auto rowsOf = [&](Value v) -> Value {
        const int64_t F = cast<MemRefType>(v.getType()).getDimSize(1);
        return rewriter.create<memref::SubViewOp>(loc, v, SmallVector<OpFoldResult>{r0, rewriter.getIndexAttr(0)},
                                                  SmallVector<OpFoldResult>{rows, rewriter.getIndexAttr(F)},
                                                  SmallVector<OpFoldResult>{rewriter.getIndexAttr(1), rewriter.getIndexAttr(1)});
      };
      auto one = rewriter.getIndexAttr(1), zero = rewriter.getIndexAttr(0);
      Value t = rewriter.create<memref::SubViewOp>(
          loc, block, SmallVector<OpFoldResult>{zero, zero, zero},
          SmallVector<OpFoldResult>{rows, rewriter.getIndexAttr(O), rewriter.getIndexAttr(J)},
          SmallVector<OpFoldResult>{one, one, one});
      firstStage(rewriter, loc, rows, rowsOf(x1), a, t);
      IRMapping map;
      map.map(alloc.getResult(), t);
      map.map(x2, rowsOf(x2));
      map.map(y, rowsOf(y));
      rewriter.clone(*second.getOperation(), map);
    }
    rewriter.eraseOp(second);  // (the deallocation pass, later, frees the block)
  }
};

bool readsIndices(linalg::GenericOp g) {
  return llvm::any_of(g.getRegion().front().getOperations(), [](Operation& op) { return isa<linalg::IndexOp>(op); });
}

// How a reduction's payload combines its output's value (the accumulator) with the next term t: acc + t (either
// operand order), or t > acc ? t : acc, the largest term but NaN (Softmax's max, build_network.cpp's largerNotNaN:
// a maxnumf, but for which of -0 and +0 it keeps); none if it is neither.
std::optional<vector::CombiningKind> combiningKind(linalg::GenericOp g) {
  Block& body = g.getRegion().front();
  Operation* combine = body.getTerminator()->getOperand(0).getDefiningOp();
  BlockArgument acc = body.getArgument(g.getDpsInitOperand(0)->getOperandNumber());
  if (auto add = dyn_cast_or_null<arith::AddFOp>(combine))
    if (acc.hasOneUse() && (add.getLhs() == acc || add.getRhs() == acc)) return vector::CombiningKind::ADD;
  if (auto select = dyn_cast_or_null<arith::SelectOp>(combine)) {
    auto greater = select.getCondition().getDefiningOp<arith::CmpFOp>();
    const bool onlyCompared = llvm::all_of(acc.getUsers(), [&](Operation* u) { return u == greater || u == select; });
    if (greater && greater.getPredicate() == arith::CmpFPredicate::OGT && greater.getLhs() == select.getTrueValue() &&
        greater.getRhs() == acc && select.getFalseValue() == acc && onlyCompared)
      return vector::CombiningKind::MAXNUMF;
  }
  return {};
}

// LayerNorm's, RMSNorm's and Softmax's forward (build_network.cpp, norm, rowSoftmax and softmax), rows of S values
// at a time. A consumer (an all-parallel generic) reads per-row statistics; each comes from row reductions (a
// linalg.fill, then a generic whose one reduction runs along the row, a sum or a max) and per-row maps of those
// (all-parallel generics over the rows). As loops, each would be a pass over the whole batch and every reduction a
// chain of scalar operations through memory. Here, row by row while the row is in L1. Where the rows run along
// the last loop: the reductions as 16 partial sums or maxima in a vector register (masked for the last S % 16
// values), the maps on scalars, then the consumer 16 values at a time. Where they run along another loop
// (Softmax along an inner dim, `along` below), 16 rows side by side, one a lane, 16 positions of the last loop:
// the reductions step by step along the rows in vectors (each lane's terms in order, as the ET kernel's), the maps
// on those vectors, then the consumer step by step.
struct RowStatisticsToVector : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;
  static constexpr int64_t kRowLanes = 16;
  struct Row;

  // The ops that compute the consumer's per-row operands, the buffers they write, and among those the rows of
  // values computed from a row's statistics (Softmax's exp(x - max)), which the rewrite keeps in a scratch row;
  // the loop the rows run along.
  struct Statistics {
    SmallVector<Operation*> ops;
    SmallVector<Value> buffers;
    SmallVector<Value> rowBuffers;
    unsigned along = 0;
  };

  static bool allParallel(linalg::GenericOp g) { return g.getNumParallelLoops() == g.getNumLoops(); }
  // The map of a per-row value in a generic of `loops` loops whose rows run along loop `along`: the other loops.
  static AffineMap perRowMap(unsigned loops, unsigned along, MLIRContext* ctx) {
    return AffineMap::getMultiDimIdentityMap(loops, ctx).dropResult(along);
  }
  // The linalg ops that write `buffer`, in their order, if it is allocated in `block`; none otherwise.
  static SmallVector<Operation*> writersOf(Value buffer, Block* block) {
    auto alloc = buffer.getDefiningOp<memref::AllocOp>();
    if (!alloc || alloc->getBlock() != block) return {};
    SmallVector<Operation*> writers;
    for (Operation* user : buffer.getUsers())
      if (auto op = dyn_cast<linalg::LinalgOp>(user); op && llvm::is_contained(op.getDpsInits(), buffer)) {
        if (user->getBlock() != block) return {};
        writers.push_back(user);
      }
    llvm::sort(writers, [](Operation* a, Operation* b) { return a->isBeforeInBlock(b); });
    return writers;
  }
  static bool isRowReduction(linalg::GenericOp g, unsigned loops, unsigned along) {
    return g.getNumLoops() == loops && g.getNumReductionLoops() == 1 &&
           g.getIteratorTypesArray()[along] == utils::IteratorType::reduction && g.getNumDpsInits() == 1 &&
           g.getMatchingIndexingMap(g.getDpsInitOperand(0)) == perRowMap(loops, along, g.getContext()) &&
           combiningKind(g) && !readsIndices(g);
  }
  static bool isRowMap(linalg::GenericOp g, unsigned loops) {
    return g.getNumLoops() == loops - 1 && allParallel(g) && g.getNumDpsInits() == 1 &&
           llvm::all_of(g.getIndexingMapsArray(), [](AffineMap m) { return m.isIdentity(); }) &&
           !g.payloadUsesValueFromOperand(g.getDpsInitOperand(0)) && !readsIndices(g);
  }
  // A buffer read with `map` by a generic of `loops` loops, read as vectors along the last loop.
  static bool isRowVectors(Value buffer, AffineMap map, unsigned loops) {
    auto type = dyn_cast<MemRefType>(buffer.getType());
    return type && map.isIdentity() && map.getNumDims() == loops && isLastMemrefDimUnitStride(type);
  }

  // The generic that writes `buffer` row by row from its rows' statistics (reading at least one per row), if
  // that is what writes it.
  static linalg::GenericOp rowValuesWriter(Value buffer, Block* block, unsigned loops, unsigned along) {
    const SmallVector<Operation*> writers = writersOf(buffer, block);
    auto writer = writers.size() == 1 ? dyn_cast<linalg::GenericOp>(writers[0]) : linalg::GenericOp{};
    if (!writer || writer.getNumLoops() != loops || !allParallel(writer) || writer.getNumDpsInits() != 1 ||
        !writer.getMatchingIndexingMap(writer.getDpsInitOperand(0)).isIdentity() ||
        writer.payloadUsesValueFromOperand(writer.getDpsInitOperand(0)))
      return {};
    const AffineMap perRow = perRowMap(loops, along, buffer.getContext());
    const bool readsStatistics = llvm::any_of(writer.getDpsInputOperands(), [&](OpOperand* in) {
      return writer.getMatchingIndexingMap(in) == perRow;
    });
    return readsStatistics ? writer : linalg::GenericOp{};
  }

  // Adds to `stats` what computes the operands of `g` (a consumer, a reduction or a row of values): per-row ones
  // (collect), rows of values computed from statistics, and nothing for the other rows and the per-column ones.
  static bool collectInputs(linalg::GenericOp g, unsigned loops, Statistics& stats) {
    const AffineMap all = AffineMap::getMultiDimIdentityMap(loops, g.getContext());
    for (OpOperand* in : g.getDpsInputOperands()) {
      const AffineMap m = g.getMatchingIndexingMap(in);
      Value buffer = in->get();
      linalg::GenericOp writer;
      if (m == perRowMap(loops, stats.along, g.getContext())) {
        if (!collect(buffer, g->getBlock(), loops, stats)) return false;
      } else if (m == all && llvm::is_contained(stats.rowBuffers, buffer)) {
        continue;
      } else if (m == all && (writer = rowValuesWriter(buffer, g->getBlock(), loops, stats.along))) {
        if (!collectInputs(writer, loops, stats)) return false;
        stats.ops.push_back(writer);
        stats.buffers.push_back(buffer);
        stats.rowBuffers.push_back(buffer);
      } else if (!isRowVectors(buffer, m, loops) && !(m == all.getMinorSubMap(1) && isa<MemRefType>(buffer.getType()))) {
        return false;
      }
    }
    return true;
  }

  // Adds to `stats` what writes the per-row `buffer` (a row-map generic, or a fill and a row reduction), and
  // what writes the per-row buffers those read.
  static bool collect(Value buffer, Block* block, unsigned loops, Statistics& stats) {
    if (llvm::is_contained(stats.buffers, buffer)) return true;
    const SmallVector<Operation*> writers = writersOf(buffer, block);  // [fill,] writer
    if (writers.empty() || writers.size() > 2) return false;
    auto fill = writers.size() == 2 ? dyn_cast<linalg::FillOp>(writers[0]) : linalg::FillOp{};
    auto writer = dyn_cast<linalg::GenericOp>(writers.back());
    if (!writer || (writers.size() == 2 && !fill)) return false;
    const bool reduction = fill && isRowReduction(writer, loops, stats.along);
    if (!reduction && (fill || !isRowMap(writer, loops))) return false;
    const bool inputsCollected =
        reduction ? collectInputs(writer, loops, stats)
                  : llvm::all_of(writer.getDpsInputOperands(),  // a row map reads per-row values only (isRowMap)
                                 [&](OpOperand* in) { return collect(in->get(), block, loops, stats); });
    if (!inputsCollected) return false;
    if (fill) stats.ops.push_back(fill);
    stats.ops.push_back(writer);
    stats.buffers.push_back(buffer);
    return true;
  }

  // The loop the consumer's rows run along: the last, if an operand is per row that way; otherwise one between the
  // first (the batch) and the last that an operand's map leaves out.
  static std::optional<unsigned> rowsAlong(linalg::GenericOp g) {
    const unsigned loops = g.getNumLoops();
    for (unsigned along = loops - 1; along >= 1; --along)
      for (OpOperand* in : g.getDpsInputOperands())
        if (g.getMatchingIndexingMap(in) == perRowMap(loops, along, g.getContext())) return along;
    return {};
  }

  // The consumer's per-row operands and what computes them, if `g` is such a consumer and nothing else reads
  // them or writes memory in between.
  static FailureOr<Statistics> statisticsOf(linalg::GenericOp g) {
    const unsigned loops = g.getNumLoops();
    if (!g.hasPureBufferSemantics() || loops < 2 || !allParallel(g) || g.getNumDpsInits() != 1) return failure();
    OpOperand* out = g.getDpsInitOperand(0);
    const std::optional<unsigned> along = rowsAlong(g);
    if (!along || !isRowVectors(out->get(), g.getMatchingIndexingMap(out), loops) || g.payloadUsesValueFromOperand(out))
      return failure();
    auto outType = cast<MemRefType>(out->get().getType());
    if (outType.isDynamicDim(*along) || outType.isDynamicDim(loops - 1)) return failure();
    Statistics stats;
    stats.along = *along;
    if (!collectInputs(g, loops, stats) || stats.ops.empty()) return failure();
    llvm::sort(stats.ops, [](Operation* a, Operation* b) { return a->isBeforeInBlock(b); });
    for (Value buffer : stats.buffers)
      for (Operation* user : buffer.getUsers())
        if (user != g.getOperation() && !llvm::is_contained(stats.ops, user)) return failure();
    for (Operation* op = stats.ops.front(); op != g.getOperation(); op = op->getNextNode())
      if (!llvm::is_contained(stats.ops, op) && !isMemoryEffectFree(op) && !isa<memref::AllocOp>(op)) return failure();
    return stats;
  }

  LogicalResult matchAndRewrite(linalg::GenericOp g, PatternRewriter& rewriter) const override {
    FailureOr<Statistics> stats = statisticsOf(g);
    if (failed(stats)) return failure();
    rewriter.setInsertionPoint(g);
    {
      OpBuilder::InsertionGuard guard(rewriter);
      Row row{rewriter, g.getLoc()};
      if (stats->along + 1 == g.getNumLoops()) alongLastLoop(g, *stats, row);
      else alongInnerLoop(g, *stats, row);
    }
    rewriter.eraseOp(g);
    for (Operation* op : llvm::reverse(stats->ops)) rewriter.eraseOp(op);
    for (Value buffer : stats->buffers) rewriter.eraseOp(buffer.getDefiningOp());
    return success();
  }

  // Rows along the last loop: a loop over each other loop, then per row its statistics and the consumer along it.
  static void alongLastLoop(linalg::GenericOp g, const Statistics& stats, Row& row) {
    Value out = g.getDpsInitOperand(0)->get();
    const unsigned loops = g.getNumLoops();
    const int64_t S = cast<MemRefType>(out.getType()).getDimSize(loops - 1);
    for (Value buffer : stats.rowBuffers) row.scratch[buffer] = row.scratchBuffer(buffer, {S});
    row.loopOverRows(out);
    for (Operation* op : stats.ops) {
      if (auto fill = dyn_cast<linalg::FillOp>(op)) row.value[fill.getDpsInitOperand(0)->get()] = fill.value();
      else if (auto w = cast<linalg::GenericOp>(op); w.getNumReductionLoops() == 1) row.reduce(w, S);
      else if (w.getNumLoops() == loops) row.computeRow(w, S);
      else row.map(w);
    }
    row.writeRow(g, out, S);
  }

  // Rows along another loop: a loop over each loop but that one and the last, then 16 rows side by side at a
  // time (16 positions of the last loop), their statistics as vectors, and the consumer step by step along them.
  static void alongInnerLoop(linalg::GenericOp g, const Statistics& stats, Row& row) {
    Value out = g.getDpsInitOperand(0)->get();
    auto outType = cast<MemRefType>(out.getType());
    const unsigned loops = g.getNumLoops();
    const int64_t S = outType.getDimSize(stats.along);
    row.along = stats.along;
    for (Value buffer : stats.rowBuffers) row.scratch[buffer] = row.scratchBuffer(buffer, {S, kRowLanes});
    for (unsigned d = 0; d + 1 < loops; ++d) row.at.push_back(d == stats.along ? Value{} : row.loop(out, d));
    row.forColumns(outType.getDimSize(loops - 1), {}, [&](Value c, Value mask, Value) {
      for (Operation* op : stats.ops) {
        if (auto fill = dyn_cast<linalg::FillOp>(op))
          row.value[fill.getDpsInitOperand(0)->get()] = row.lanes(fill.value());
        else if (auto w = cast<linalg::GenericOp>(op); w.getNumReductionLoops() == 1)
          row.reduceSteps(w, S, c, mask);
        else if (w.getNumLoops() == loops) row.computeSteps(w, S, c, mask);
        else row.map(w);
      }
      row.forSteps(S, {}, [&](Value) {
        row.store(row.payload(g, c, mask), out, c, mask);
        return Value{};
      });
      return Value{};
    });
  }

  // One row's code: its indices (at), its statistics (value: per buffer), and the vector code along it.
  // Along an inner loop (`along` set), "this row" is 16 rows side by side: at[along] is the step along them, their
  // values are vectors, and a scratch buffer is [S, 16].
  struct Row {
    PatternRewriter& b;
    Location loc;
    SmallVector<Value> at{};
    DenseMap<Value, Value> value{};    // per-row buffer -> this row's value
    DenseMap<Value, Value> scratch{};  // row-values buffer -> the [S] buffer holding this row's
    std::optional<unsigned> along{};

    Value index(int64_t v) { return b.create<arith::ConstantIndexOp>(loc, v); }
    // An scf.for over dim d of `buffer`, the insertion point moved into it; returns its induction variable.
    Value loop(Value buffer, unsigned d) {
      auto f = b.create<scf::ForOp>(loc, index(0), b.create<memref::DimOp>(loc, buffer, d), index(1));
      b.setInsertionPointToStart(f.getBody());
      return f.getInductionVar();
    }
    // A loop over each dim of `buffer` but the last (at: their induction variables), the insertion point inside.
    void loopOverRows(Value buffer) {
      for (int64_t d = 0; d + 1 < cast<MemRefType>(buffer.getType()).getRank(); ++d)
        at.push_back(loop(buffer, static_cast<unsigned>(d)));
    }
    Value scratchBuffer(Value buffer, ArrayRef<int64_t> shape) {
      auto element = cast<MemRefType>(buffer.getType()).getElementType();
      return b.create<memref::AllocOp>(loc, MemRefType::get(shape, element), b.getI64IntegerAttr(64));
    }
    // Where this step's values are in a scratch buffer along an inner loop.
    SmallVector<Value> scratchIndices() { return {at[*along], index(0)}; }
    // acc = f(acc) at each step s of S along an inner loop (at[along] = s meanwhile); acc may be null.
    Value forSteps(int64_t S, Value acc, function_ref<Value(Value)> f) {
      auto steps = b.create<scf::ForOp>(loc, index(0), index(S), index(1), acc ? ValueRange{acc} : ValueRange{},
                                        [&](OpBuilder& inner, Location, Value s, ValueRange carried) {
                                          at[*along] = s;
                                          Value next = f(acc ? carried[0] : Value{});
                                          inner.create<scf::YieldOp>(loc, next ? ValueRange{next} : ValueRange{});
                                        });
      at[*along] = Value{};
      return acc ? steps.getResult(0) : Value{};
    }
    SmallVector<Value> indices(Value c) {
      SmallVector<Value> i = at;
      i.push_back(c);
      return i;
    }
    VectorType lanes(Type element) { return VectorType::get({kRowLanes}, element); }
    Value lanes(Value scalar) { return b.create<vector::BroadcastOp>(loc, lanes(scalar.getType()), scalar); }
    Value load(Value buffer, ValueRange i, Value mask) {
      Type element = cast<MemRefType>(buffer.getType()).getElementType();
      if (!mask) return b.create<vector::LoadOp>(loc, lanes(element), buffer, i);
      Value zeros = b.create<arith::ConstantOp>(loc, b.getZeroAttr(lanes(element)));
      return b.create<vector::MaskedLoadOp>(loc, lanes(element), buffer, i, mask, zeros);
    }
    void store(Value v, Value buffer, Value c, Value mask) {
      if (mask) b.create<vector::MaskedStoreOp>(loc, buffer, indices(c), mask, v);
      else b.create<vector::StoreOp>(loc, v, buffer, indices(c));
    }
    // acc = f(c, mask, acc) at every 16 values of the row from c = from: an scf.for over the full vectors, then
    // the last S % 16 values masked (acc keeping its lanes past them). acc may be null (f then returns null).
    Value forColumns(int64_t S, Value acc, function_ref<Value(Value, Value, Value)> f, int64_t from = 0) {
      const int64_t full = S / kRowLanes * kRowLanes;
      if (full > from) {
        auto loop = b.create<scf::ForOp>(loc, index(from), index(full), index(kRowLanes), acc ? ValueRange{acc} : ValueRange{},
                                         [&](OpBuilder& inner, Location, Value c, ValueRange carried) {
                                           Value next = f(c, {}, acc ? carried[0] : Value{});
                                           inner.create<scf::YieldOp>(loc, next ? ValueRange{next} : ValueRange{});
                                         });
        if (acc) acc = loop.getResult(0);
      }
      if (full < S) {
        Value mask = b.create<vector::CreateMaskOp>(loc, lanes(b.getI1Type()), ValueRange{index(S - full)});
        Value next = f(index(full), mask, acc);
        if (acc) acc = b.create<arith::SelectOp>(loc, mask, next, acc);
      }
      return acc;
    }
    // An operand read with map m (dims in increasing order, isOrderedProjection) at columns c..c+15 of the row:
    // a vector where m reads the last loop, else one value for the whole row.
    Value loadMapped(Value buffer, AffineMap m, Value c, Value mask) {
      SmallVector<Value> i;
      for (AffineExpr e : m.getResults()) {
        const unsigned d = cast<AffineDimExpr>(e).getPosition();
        i.push_back(d + 1 == m.getNumDims() ? c : at[d]);
      }
      if (m.isFunctionOfDim(m.getNumDims() - 1)) return load(buffer, i, mask);
      return b.create<memref::LoadOp>(loc, buffer, i);
    }
    // g's payload along this row of S values into `out`, 16 at a time.
    void writeRow(linalg::GenericOp g, Value out, int64_t S) {
      forColumns(S, {}, [&](Value c, Value mask, Value) {
        store(payload(g, c, mask), out, c, mask);
        return Value{};
      });
    }
    // g's payload at columns c..c+15 of the row: rows of values from their scratch row, per-row statistics this
    // row's values, any other operand read through its map; `acc` (when given) stands for its output's value.
    Value payload(linalg::GenericOp g, Value c, Value mask, Value acc = {}) {
      IRMapping map;
      Block& body = g.getRegion().front();
      const unsigned loops = g.getNumLoops();
      for (OpOperand* in : g.getDpsInputOperands()) {
        Value v = scratch.count(in->get()) ? (along ? load(scratch.lookup(in->get()), scratchIndices(), {})
                                                   : load(scratch.lookup(in->get()), ValueRange{c}, mask))
                  : value.count(in->get()) ? value.lookup(in->get())
                                           : loadMapped(in->get(), g.getMatchingIndexingMap(in), c, mask);
        map.map(body.getArgument(in->getOperandNumber()), v);
      }
      if (acc) map.map(body.getArgument(g.getDpsInitOperand(0)->getOperandNumber()), acc);
      return vectorizePayload(b, loc, body, map, kRowLanes, [&](int64_t d) -> Value {
        if (d + 1 < loops) return at[d];
        SmallVector<int64_t> steps = llvm::to_vector(llvm::seq<int64_t>(0, kRowLanes));
        Value iota = b.create<arith::ConstantOp>(
            loc, DenseElementsAttr::get(VectorType::get({kRowLanes}, b.getIndexType()), ArrayRef<int64_t>(steps)));
        return b.create<arith::AddIOp>(loc, b.create<vector::BroadcastOp>(loc, iota.getType(), c), iota);
      });
    }
    // The row reduction w, started from the fill's value: 16 partial sums (or maxima) in each of kChains vectors
    // while 4 x 16 values are left, then in the first, combined pairwise at the end and then across lanes. Each
    // vector is a chain of dependent adds: with one, a row of LayerNorm<256> waited on it (as the ET kernel's
    // sum_mapped, vmath.hpp, which sums in the same order up to its last S % 16 values).
    void reduce(linalg::GenericOp w, int64_t S) {
      constexpr int64_t kChains = 4;
      Value buffer = w.getDpsInitOperand(0)->get();
      const vector::CombiningKind kind = *combiningKind(w);
      auto element = cast<FloatType>(cast<MemRefType>(buffer.getType()).getElementType());
      const bool max = kind == vector::CombiningKind::MAXNUMF;
      Value start = b.create<arith::ConstantOp>(
          loc, DenseElementsAttr::get(lanes(element), max ? APFloat::getInf(element.getFloatSemantics(), true)
                                                          : APFloat::getZero(element.getFloatSemantics())));
      SmallVector<Value> partial(kChains, start);
      const int64_t chained = S / (kChains * kRowLanes) * (kChains * kRowLanes);
      if (chained > 0) {
        auto loop = b.create<scf::ForOp>(loc, index(0), index(chained), index(kChains * kRowLanes), partial,
                                         [&](OpBuilder& inner, Location, Value c, ValueRange acc) {
                                           SmallVector<Value> next;
                                           for (int64_t k = 0; k < kChains; ++k) {
                                             Value ck = b.create<arith::AddIOp>(loc, c, index(k * kRowLanes));
                                             next.push_back(payload(w, ck, {}, acc[k]));
                                           }
                                           inner.create<scf::YieldOp>(loc, next);
                                         });
        partial.assign(loop.getResults().begin(), loop.getResults().end());
      }
      partial[0] = forColumns(
          S, partial[0], [&](Value c, Value mask, Value acc) { return payload(w, c, mask, acc); }, chained);
      auto combine = [&](Value x, Value y) {
        return max ? largerNotNaN(b, loc, x, y) : vector::makeArithReduction(b, loc, kind, x, y);
      };
      Value all = chained > 0 ? combine(combine(partial[0], partial[1]), combine(partial[2], partial[3])) : partial[0];
      Value fill = value.lookup(buffer);
      value[buffer] = max ? combine(fill, laneTree(all, combine))
                          : b.create<vector::ReductionOp>(loc, kind, all, fill, arith::FastMathFlags::reassoc);
    }
    // combine over v's lanes as a tree, lane l with l + 8, then with l + 4, l + 2 and l + 1, as the ET kernel's
    // lane_tree: vector.reduction of maxnumf became a chain of 16 scalar steps, three instructions each.
    Value laneTree(Value v, function_ref<Value(Value, Value)> combine) {
      for (int64_t half = kRowLanes / 2; half >= 1; half /= 2) {
        SmallVector<int64_t> down;
        for (int64_t l = 0; l < kRowLanes; ++l) down.push_back((l + half) % kRowLanes);
        v = combine(v, b.create<vector::ShuffleOp>(loc, v, v, down));
      }
      return b.create<vector::ExtractOp>(loc, v, ArrayRef<int64_t>{0});
    }
    // Along an inner loop: the reduction w over the S steps of these rows, from the fill's vector, a chain per lane.
    void reduceSteps(linalg::GenericOp w, int64_t S, Value c, Value mask) {
      Value buffer = w.getDpsInitOperand(0)->get();
      value[buffer] = forSteps(S, value.lookup(buffer), [&](Value acc) { return payload(w, c, mask, acc); });
    }
    // Along an inner loop: w's values at each of the S steps of these rows into its scratch block.
    void computeSteps(linalg::GenericOp w, int64_t S, Value c, Value mask) {
      Value block = scratch.lookup(w.getDpsInitOperand(0)->get());
      forSteps(S, {}, [&](Value) {
        b.create<vector::StoreOp>(loc, payload(w, c, mask), block, scratchIndices());
        return Value{};
      });
    }
    // w's values along this row into its scratch row.
    void computeRow(linalg::GenericOp w, int64_t S) {
      Value row = scratch.lookup(w.getDpsInitOperand(0)->get());
      forColumns(S, {}, [&](Value c, Value mask, Value) {
        Value v = payload(w, c, mask);
        if (mask) b.create<vector::MaskedStoreOp>(loc, row, ValueRange{c}, mask, v);
        else b.create<vector::StoreOp>(loc, v, row, ValueRange{c});
        return Value{};
      });
    }
    // w's payload on this row's statistics (vectors along an inner loop).
    void map(linalg::GenericOp w) {
      IRMapping m;
      Block& body = w.getRegion().front();
      for (OpOperand* in : w.getDpsInputOperands()) m.map(body.getArgument(in->getOperandNumber()), value.lookup(in->get()));
      Value result;
      if (along) {
        result = vectorizePayload(b, loc, body, m, kRowLanes, [](int64_t) -> Value { return {}; });
      } else {
        for (Operation& op : body.without_terminator()) b.clone(op, m);
        result = m.lookupOrDefault(body.getTerminator()->getOperand(0));
      }
      value[w.getDpsInitOperand(0)->get()] = result;
    }
  };
};

// An all-parallel generic that the patterns above left: an elementwise layer with no Linear or row statistics to
// run in (a network's first layers, Dropout alone), BatchNorm1d's per-channel terms. As loops, LLVM vectorised
// only rows of 16 values or more, behind checks that the buffers do not overlap: on Zen 3, ReLU on [N, 8] ran
// 5.3x slower than in the ET kernel, GELU on [N, 256] 1.11-1.14x. Here row by row, 16 values at a time, the last
// S % 16 masked: an operand is a vector where its map reads the last loop, one value per row where it does not.
// Rows of fewer than kMinValues stay loops: a masked vector a row cost more than LLVM's scalar loop (ReLU on
// [N, 3] at batch 256 on Zen 3: 1.05 against 0.54 us; the ET kernel, along the whole batch at once, 0.10).
struct ElementwiseToVector : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;
  using Row = RowStatisticsToVector::Row;
  static constexpr int64_t kMinValues = 8;

  // m reads dims in increasing order, the last loop (if at all) as its last: each row's values are consecutive.
  static bool isOrderedProjection(AffineMap m) {
    if (!m.isProjectedPermutation()) return false;
    for (unsigned r = 1; r < m.getNumResults(); ++r)
      if (m.getDimPosition(r) <= m.getDimPosition(r - 1)) return false;
    return true;
  }
  static bool isFloatBuffer(Value v) {
    auto type = dyn_cast<MemRefType>(v.getType());
    return type && isa<FloatType>(type.getElementType()) && (type.getRank() == 0 || isLastMemrefDimUnitStride(type));
  }
  static bool isElementwise(linalg::GenericOp g) {
    if (!g.hasPureBufferSemantics() || g.getNumLoops() < 1 || g.getNumReductionLoops() != 0 || g.getNumDpsInits() != 1)
      return false;
    OpOperand* out = g.getDpsInitOperand(0);
    auto outType = dyn_cast<MemRefType>(out->get().getType());
    if (!outType || !isFloatBuffer(out->get()) || outType.isDynamicDim(outType.getRank() - 1) ||
        outType.getDimSize(outType.getRank() - 1) < kMinValues || !g.getMatchingIndexingMap(out).isIdentity() ||
        g.payloadUsesValueFromOperand(out))
      return false;
    const bool operandsFit = llvm::all_of(g.getDpsInputOperands(), [&](OpOperand* in) {
      return isFloatBuffer(in->get()) && isOrderedProjection(g.getMatchingIndexingMap(in));
    });
    const bool payloadFits = llvm::all_of(g.getRegion().front().without_terminator(), [](Operation& op) {
      return op.getNumRegions() == 0 &&
             (isa<linalg::IndexOp>(op) || isa<arith::ArithDialect, math::MathDialect>(op.getDialect()));
    });
    return operandsFit && payloadFits;
  }

  LogicalResult matchAndRewrite(linalg::GenericOp g, PatternRewriter& rewriter) const override {
    if (!isElementwise(g)) return failure();
    Value out = g.getDpsInitOperand(0)->get();
    rewriter.setInsertionPoint(g);
    {
      OpBuilder::InsertionGuard guard(rewriter);
      Row row{rewriter, g.getLoc()};
      row.loopOverRows(out);
      row.writeRow(g, out, cast<MemRefType>(out.getType()).getDimSize(g.getNumLoops() - 1));
    }
    rewriter.eraseOp(g);
    return success();
  }
};

struct ContractionToVectorPass : PassWrapper<ContractionToVectorPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(ContractionToVectorPass)
  ContractionToVectorPass(RegisterTiles tiles, int64_t l2Bytes) : tiles(tiles), l2Bytes(l2Bytes) {}
  RegisterTiles tiles;
  int64_t l2Bytes;
  StringRef getArgument() const final { return "kiln-contraction-to-vector"; }
  StringRef getDescription() const final { return "register-tiled vector code for matmuls and their epilogues"; }
  void getDependentDialects(DialectRegistry& registry) const override {
    registry.insert<vector::VectorDialect, scf::SCFDialect, arith::ArithDialect, memref::MemRefDialect, func::FuncDialect,
                    LLVM::LLVMDialect>();
  }
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateContractionToVectorPatterns(patterns, tiles, l2Bytes);
    GreedyRewriteConfig config;
    config.strictMode = GreedyRewriteStrictness::ExistingOps;
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns), config)))
      return signalPassFailure();
    // Then the elementwise generics those left (run together, it would take the epilogues and statistics' maps).
    RewritePatternSet elementwise(&getContext());
    elementwise.add<ElementwiseToVector>(&getContext());
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(elementwise), config))) signalPassFailure();
  }
};

}  // namespace

void populateContractionToVectorPatterns(RewritePatternSet& patterns, RegisterTiles tiles, int64_t l2Bytes) {
  patterns.add<ContractionToVector>(patterns.getContext(), tiles, l2Bytes);
  patterns.add<BilinearToVector>(patterns.getContext(), tiles);
  patterns.add<RowStatisticsToVector, TransposeToVector>(patterns.getContext());
}

std::unique_ptr<Pass> createContractionToVectorPass(RegisterTiles tiles, int64_t l2Bytes) {
  return std::make_unique<ContractionToVectorPass>(tiles, l2Bytes);
}

}  // namespace kiln::mlir_backend

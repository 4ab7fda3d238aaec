// Step 1 of the ladder: an ir::Network as func + linalg / tensor / arith / math on tensors.
//
// Each mode is one function, <name>_<mode>_impl(%n, %seed, %step, buffers..., inputs..., output), with every
// buffer a flat static memref, inputs and output [N, features] memrefs. The body reads them through
// bufferization.to_tensor, computes on tensors and writes the output (and, in train mode, BatchNorm1d's running
// statistics) back with bufferization.materialize_in_destination. Activations stay [N, F] (row-major per
// sample, so Flatten and Unflatten are free); a layer that needs more dims (Softmax, the norms) expands them.
// The body walks the network's steps (ir::Network::steps; its layers one after the other when it has none),
// one tensor per value: a layer step lowers its layer, an add step (Residual, Sum) adds its inputs
// elementwise, a concat step (Concat) copies its inputs into slices of one result.
// Each layer's lowering is one member function below, named after the layer, and `lowerings()` maps each layer
// kind to it. The activations have one lowering for all: their math from dsl/layers/activations.hpp,
// instantiated on Scalar. docs/SEMANTICS.md says what each layer computes.
#include "lowering.hpp"
#include "scalar.hpp"

#include <kiln/dsl/layers.hpp>
#include <kiln/runtime/error.hpp>

#include <fmt/format.h>

#include <mlir/Dialect/Arith/IR/Arith.h>
#include <mlir/Dialect/Bufferization/IR/Bufferization.h>
#include <mlir/Dialect/Func/IR/FuncOps.h>
#include <mlir/Dialect/Linalg/IR/Linalg.h>
#include <mlir/Dialect/Math/IR/Math.h>
#include <mlir/Dialect/MemRef/IR/MemRef.h>
#include <mlir/Dialect/Tensor/IR/Tensor.h>
#include <mlir/IR/Builders.h>
#include <mlir/IR/BuiltinOps.h>

#include <cmath>
#include <limits>
#include <map>

namespace kiln::mlir_backend {

using namespace ::mlir;
using utils::IteratorType;

namespace {

constexpr int64_t kDyn = ShapedType::kDynamic;

// A layer's attribute, which checkLowering has made sure it has.
double attr(const ir::Layer& l, std::string_view name) { return l.attributes.find(name)->value; }

// The network's data flow: its steps, or for a network built by hand without them, its layers one after the
// other (the first one reading both inputs of a two-input network, as a Bilinear does).
std::vector<Step> stepsOf(const ir::Network& net) {
  if (!net.steps.empty()) return net.steps;
  std::vector<Step> chain(net.layers.size());
  for (std::size_t i = 0; i < chain.size(); ++i) {
    Step& s = chain[i];
    s.leaf = i;
    s.inputs[static_cast<std::size_t>(s.input_count++)] = i == 0 ? 0 : value_of_step(i - 1);
    if (i == 0 && net.input_count == 2) s.inputs[static_cast<std::size_t>(s.input_count++)] = 1;
    s.out = net.layers[i].out;
  }
  return chain;
}

// The state_dict's buffers as flat memrefs, then the packed weights: every function's arguments (after the
// scalars of the eval and train functions).
SmallVector<Type> bufferArguments(Builder& b, const ir::Network& net) {
  SmallVector<Type> args;
  for (const SchemaEntry& buf : net.buffers)
    args.push_back(buf.spec.dtype() == DType::int64 ? MemRefType::get({1}, b.getI64Type())
                                                    : MemRefType::get({buf.spec.shape.numel()}, b.getF32Type()));
  args.push_back(MemRefType::get({kiln::mlir::packed_floats(net)}, b.getF32Type()));
  return args;
}

class FunctionBuilder;
// How one kind of layer lowers: y from x (and the network's second input x2, for Bilinear), plus what it reads.
struct Lowering {
  Value (*lower)(FunctionBuilder& f, const ir::Layer& l, Value x, Value x2);
  std::vector<Role> roles;              // the parameters it needs
  std::vector<std::string_view> attributes;  // the attributes it reads
};
const std::map<std::string_view, Lowering>& lowerings();

class FunctionBuilder {
 public:
  FunctionBuilder(ModuleOp module, const ir::Network& net, bool training, const std::string& name)
      : net_(net), training_(training), b_(module.getContext()), loc_(b_.getUnknownLoc()) {
    MLIRContext* ctx = module.getContext();
    f32_ = b_.getF32Type();
    f64_ = b_.getF64Type();
    SmallVector<Type> args{b_.getIndexType(), b_.getI64Type(), b_.getI64Type()};
    args.append(bufferArguments(b_, net));
    args.push_back(MemRefType::get({kDyn, net.input.numel()}, f32_));
    if (net.input_count == 2) args.push_back(MemRefType::get({kDyn, net.input2.numel()}, f32_));
    args.push_back(MemRefType::get({kDyn, net.output.numel()}, f32_));
    b_.setInsertionPointToEnd(module.getBody());
    func_ = b_.create<func::FuncOp>(loc_, name, FunctionType::get(ctx, args, {}));
    func_.setPrivate();
    func_.setArgAttr(3 + net.buffers.size(), kPackedArgument, b_.getUnitAttr());
    b_.setInsertionPointToStart(func_.addEntryBlock());
  }

  void build() {
    const std::size_t nb = net_.buffers.size();
    Block& entry = func_.getBody().front();
    n_ = entry.getArgument(0);
    seed_ = entry.getArgument(1);
    step_ = entry.getArgument(2);
    // One tensor per value of the data flow: the inputs, then each step's output.
    SmallVector<Value> values{tensorOf(entry.getArgument(4 + nb)),
                              net_.input_count == 2 ? tensorOf(entry.getArgument(5 + nb)) : Value{}};
    for (const Step& s : stepsOf(net_)) values.push_back(lowerStep(s, values));
    Value y = values.size() > first_step_value ? values.back() : values[0];
    // The output, then the updated running statistics: written after the whole forward has read the old ones.
    Value out = entry.getArguments().back();
    if (auto rows = y.getDefiningOp<tensor::CollapseShapeOp>()) {
      // The last step worked on rows in a shape of their own (collapseRows): it writes into the output in that
      // shape. Empty tensor elimination does not see through a reshape: it would write a buffer of its own,
      // copied into the output after it. (The view comes first, where the step's empty tensor can use it.)
      y = rows.getSrc();
      OpBuilder::InsertionGuard guard(b_);
      b_.setInsertionPointToStart(&entry);
      SmallVector<OpFoldResult> sizes{OpFoldResult(n_)};
      for (int64_t size : rows.getSrcType().getShape().drop_front()) sizes.push_back(b_.getIndexAttr(size));
      out = b_.create<memref::ExpandShapeOp>(loc_, rows.getSrcType().getShape(), out, rows.getReassociationIndices(),
                                             sizes);
    }
    b_.create<bufferization::MaterializeInDestinationOp>(loc_, TypeRange{}, y, out, true, true);
    for (auto& [value, memref] : pendingWrites_)
      b_.create<bufferization::MaterializeInDestinationOp>(loc_, TypeRange{}, value, memref, true, true);
    b_.create<func::ReturnOp>(loc_);
  }

 private:
  Value lowerStep(const Step& s, ArrayRef<Value> values) {
    SmallVector<Value> ins;
    for (int j = 0; j < s.input_count; ++j) ins.push_back(values[s.inputs[static_cast<std::size_t>(j)]]);
    switch (s.op) {
      case Step::Op::layer: return lowerLayer(net_.layers[s.leaf], ins[0], ins.size() > 1 ? ins[1] : Value{});
      case Step::Op::add: return sum(ins);
      case Step::Op::concat: return concat(ins, s.out, s.dim);
    }
    return {};
  }
  Value lowerLayer(const ir::Layer& l, Value x, Value x2) { return lowerings().at(l.kind).lower(*this, l, x, x2); }

  friend const std::map<std::string_view, Lowering>& lowerings();

  // ---- helpers -----------------------------------------------------------------------------------------
  Value constF32(OpBuilder& b, float v) { return b.create<arith::ConstantOp>(loc_, b.getF32FloatAttr(v)); }
  Value constF64(OpBuilder& b, double v) { return b.create<arith::ConstantOp>(loc_, b.getF64FloatAttr(v)); }
  Value constI32(OpBuilder& b, uint32_t v) {
    return b.create<arith::ConstantOp>(loc_, b.getI32IntegerAttr(static_cast<int32_t>(v)));
  }
  Value tensorOf(Value memref) {
    return b_.create<bufferization::ToTensorOp>(loc_, memref, /*restrict=*/true, /*writable=*/false);
  }
  // The buffer `index` as a tensor of the given static shape (each buffer is read through one to_tensor).
  Value buffer(int index, ArrayRef<int64_t> shape) {
    Value& t = buffers_[index];
    if (!t) {
      OpBuilder::InsertionGuard guard(b_);
      b_.setInsertionPointToStart(&func_.getBody().front());
      t = tensorOf(func_.getArgument(3 + index));
    }
    if (shape.size() == 1) return t;
    return b_.create<tensor::ExpandShapeOp>(loc_, RankedTensorType::get(shape, f32_), t,
                                           SmallVector<ReassociationIndices>{llvm::to_vector(llvm::seq<int64_t>(0, shape.size()))});
  }
  // An empty [rows, trailing...] tensor; rows defaults to the batch N.
  Value emptyRows(ArrayRef<int64_t> trailing, Type element, Value rows = {}) {
    SmallVector<int64_t> shape{kDyn};
    shape.append(trailing.begin(), trailing.end());
    return b_.create<tensor::EmptyOp>(loc_, shape, element, ValueRange{rows ? rows : n_});
  }
  Value filled(Value empty, Value value) {
    return b_.create<linalg::FillOp>(loc_, ValueRange{value}, ValueRange{empty}).getResult(0);
  }
  AffineMap map(unsigned dims, ArrayRef<unsigned> results) {
    SmallVector<AffineExpr> exprs;
    for (unsigned r : results) exprs.push_back(b_.getAffineDimExpr(r));
    return AffineMap::get(dims, 0, exprs, b_.getContext());
  }
  Value generic(Type result, ValueRange ins, Value out, ArrayRef<AffineMap> maps, ArrayRef<IteratorType> iterators,
                function_ref<void(OpBuilder&, Location, ValueRange)> body) {
    return b_.create<linalg::GenericOp>(loc_, TypeRange{result}, ins, ValueRange{out}, maps, iterators, body)
        .getResult(0);
  }
  int64_t features(Value x) { return cast<RankedTensorType>(x.getType()).getDimSize(1); }
  // f(v) on every element of x [N, F].
  Value elementwise(Value x, function_ref<Value(OpBuilder&, Location, Value)> f) {
    const int64_t F = features(x);
    return generic(x.getType(), ValueRange{x}, emptyRows({F}, f32_), {map(2, {0, 1}), map(2, {0, 1})},
                   {IteratorType::parallel, IteratorType::parallel},
                   [&](OpBuilder& b, Location loc, ValueRange a) { b.create<linalg::YieldOp>(loc, f(b, loc, a[0])); });
  }
  // The parameter of role r, as a tensor of the given shape.
  Value param(const ir::Layer& l, Role r, ArrayRef<int64_t> shape) { return buffer(l.param(r), shape); }

  // ---- the activations: Act's forward from dsl/layers/activations.hpp, on each element -------------------
  template <class Act>
  Value activation(const ir::Layer& l, Value x) {
    const Act act = nn::activation_from_attributes<Act>(l.attributes);
    return elementwise(x, [&](OpBuilder& b, Location loc, Value v) {
      const Body body{b, loc};
      return act.forward(Scalar{body, v}).value(body);
    });
  }
  // x [N, F] viewed as [N, A, S, B] (row-major, so a reshape).
  Value expandRows(Value x, ArrayRef<int64_t> trailing) {
    SmallVector<int64_t> shape{kDyn};
    shape.append(trailing.begin(), trailing.end());
    SmallVector<OpFoldResult> sizes{OpFoldResult(n_)};
    for (int64_t s : trailing) sizes.push_back(b_.getIndexAttr(s));
    ReassociationIndices rest = llvm::to_vector(llvm::seq<int64_t>(1, 1 + trailing.size()));
    return b_.create<tensor::ExpandShapeOp>(loc_, RankedTensorType::get(shape, f32_), x,
                                           SmallVector<ReassociationIndices>{{0}, rest}, sizes);
  }
  Value collapseRows(Value x) {
    auto type = cast<RankedTensorType>(x.getType());
    ReassociationIndices rest = llvm::to_vector(llvm::seq<int64_t>(1, type.getRank()));
    return b_.create<tensor::CollapseShapeOp>(loc_, x, SmallVector<ReassociationIndices>{{0}, rest});
  }

  // ---- Residual and Sum: y = x_0 + x_1 + ..., added in this order (et::join::add) ------------------------
  // One elementwise generic: linalg's elementwise fusion merges it with its producers, so that a residual
  // branch ending in a Linear adds the skip path in the matmul's epilogue.
  Value sum(ArrayRef<Value> xs) {
    if (xs.size() == 1) return xs[0];
    SmallVector<AffineMap> maps(xs.size() + 1, map(2, {0, 1}));
    return generic(xs[0].getType(), xs, emptyRows({features(xs[0])}, f32_), maps,
                   {IteratorType::parallel, IteratorType::parallel}, [&](OpBuilder& b, Location loc, ValueRange v) {
                     Value acc = v[0];
                     for (std::size_t k = 1; k < xs.size(); ++k) acc = b.create<arith::AddFOp>(loc, acc, v[k]);
                     b.create<linalg::YieldOp>(loc, ValueRange{acc});
                   });
  }

  // ---- Concat along per-sample dim d --------------------------------------------------------------------
  // A sample of the result is `outer` blocks (the dims before d), each the branches' pieces one after the
  // other (et::join::concat's layout): the result is [N, outer, total], each branch viewed [N, outer, piece]
  // and copied into its slice (outer = 1 drops that dim, so that the copy fuses with a 2-D producer).
  // The branches are copied last first: the last one was computed last, so nothing runs between its producer
  // and its copy, and a Linear's epilogue then writes straight into the slice.
  Value concat(ArrayRef<Value> pieces, const Dims& out, int dim) {
    const int64_t outer = out.product(0, dim), total = out.numel() / outer;
    Value result = outer > 1 ? emptyRows({outer, total}, f32_) : emptyRows({total}, f32_);
    int64_t end = total;
    for (Value piece : llvm::reverse(pieces)) {
      const int64_t width = features(piece) / outer;
      end -= width;
      result = copyIntoSlice(outer > 1 ? expandRows(piece, {outer, width}) : piece, result, end);
    }
    return outer > 1 ? collapseRows(result) : result;
  }
  // dest with piece [N, ..., w] written at [offset, offset + w) of its last dim. Copied by an identity
  // linalg.generic into the extracted slice, which bufferizes in place: not tensor.concat (MLIR 19 does not
  // bufferize it), nor the piece inserted as it is (a strided memref.copy, which lowers to a call into MLIR's
  // runtime library, which the kernels do not link).
  Value copyIntoSlice(Value piece, Value dest, int64_t offset) {
    auto type = cast<RankedTensorType>(piece.getType());
    const auto rank = static_cast<unsigned>(type.getRank());
    SmallVector<OpFoldResult> offsets(rank, b_.getIndexAttr(0)), strides(rank, b_.getIndexAttr(1));
    SmallVector<OpFoldResult> sizes{OpFoldResult(n_)};
    offsets.back() = b_.getIndexAttr(offset);
    for (unsigned i = 1; i < rank; ++i) sizes.push_back(b_.getIndexAttr(type.getDimSize(i)));
    Value slot = b_.create<tensor::ExtractSliceOp>(loc_, type, dest, offsets, sizes, strides);
    const SmallVector<AffineMap> maps(2, b_.getMultiDimIdentityMap(rank));
    const SmallVector<IteratorType> iterators(rank, IteratorType::parallel);
    Value copy = generic(type, ValueRange{piece}, slot, maps, iterators, [&](OpBuilder& b, Location loc, ValueRange v) {
      b.create<linalg::YieldOp>(loc, ValueRange{v[0]});
    });
    return b_.create<tensor::InsertSliceOp>(loc_, copy, dest, offsets, sizes, strides);
  }

  // ---- Linear: y = x W^T + b, over the last dim ----------------------------------------------------------
  // An input [N, R..., In] is the matrix [N * R, In]. The matmul names where its packed weights are
  // (kPackedOffset), for contraction_to_vector.cpp.
  Value linear(const ir::Layer& l, Value x) {
    const int64_t in = l.in.last(), out = l.out.last(), R = l.in.numel() / in;
    Value rows = n_;
    if (R > 1) {
      x = b_.create<tensor::CollapseShapeOp>(loc_, expandRows(x, {R, in}), SmallVector<ReassociationIndices>{{0, 1}, {2}});
      rows = b_.create<arith::MulIOp>(loc_, n_, b_.create<arith::ConstantIndexOp>(loc_, R));
    }
    Value w = param(l, Role::weight, {out, in});
    auto mm = b_.create<linalg::MatmulTransposeBOp>(loc_, TypeRange{RankedTensorType::get({kDyn, out}, f32_)},
                                                    ValueRange{x, w},
                                                    ValueRange{filled(emptyRows({out}, f32_, rows), constF32(b_, 0.0f))});
    if (packedColumns(l) > 0)
      mm->setAttr(kPackedOffset, b_.getI64IntegerAttr(packedOffset(net_, static_cast<std::size_t>(&l - net_.layers.data()))));
    Value y = mm.getResult(0);
    if (l.has(Role::bias)) y = addBias(y, param(l, Role::bias, {out}), rows);
    if (R > 1) {
      SmallVector<OpFoldResult> sizes{OpFoldResult(n_), b_.getIndexAttr(R), b_.getIndexAttr(out)};
      y = collapseRows(b_.create<tensor::ExpandShapeOp>(loc_, RankedTensorType::get({kDyn, R, out}, f32_), y,
                                                        SmallVector<ReassociationIndices>{{0, 1}, {2}}, sizes));
    }
    return y;
  }
  Value addBias(Value y, Value bias, Value rows = {}) {
    const int64_t F = features(y);
    return generic(y.getType(), ValueRange{y, bias}, emptyRows({F}, f32_, rows), {map(2, {0, 1}), map(2, {1}), map(2, {0, 1})},
                   {IteratorType::parallel, IteratorType::parallel}, [&](OpBuilder& b, Location loc, ValueRange a) {
                     b.create<linalg::YieldOp>(loc, ValueRange{b.create<arith::AddFOp>(loc, a[0], a[1])});
                   });
  }

  // ---- Bilinear: y[n, o] = sum_ij x1[n, i] A[o, i, j] x2[n, j] + b[o] ------------------------------------
  // In PyTorch's order, as the expression-template kernel (so that an Inf in an input gives Inf or NaN where
  // PyTorch's does): T[n, o, j] = sum_i x1[n, i] A[o, i, j], the loop over j innermost (A's rows, contiguous;
  // contraction_to_vector.cpp makes it register tiles of broadcast products), then y[n, o] = sum_j T[n, o, j] x2[n, j]
  // (BilinearToVector runs the two in blocks of rows, T one block's).
  Value bilinear(const ir::Layer& l, Value x1, Value x2) {
    const int64_t in1 = features(x1), in2 = features(x2), out = l.out.last();
    Value a = param(l, Role::weight, {out, in1, in2});
    auto par = IteratorType::parallel, red = IteratorType::reduction;
    Value t3 = generic(RankedTensorType::get({kDyn, out, in2}, f32_), ValueRange{x1, a},
                       filled(emptyRows({out, in2}, f32_), constF32(b_, 0.0f)),
                       {map(4, {0, 2}), map(4, {1, 2, 3}), map(4, {0, 1, 3})}, {par, par, red, par},
                       [&](OpBuilder& b, Location loc, ValueRange v) {
                         auto flags = arith::FastMathFlags::contract;
                         Value p = b.create<arith::MulFOp>(loc, v[0], v[1], flags);
                         b.create<linalg::YieldOp>(loc, ValueRange{b.create<arith::AddFOp>(loc, v[2], p, flags)});
                       });
    Value y = generic(RankedTensorType::get({kDyn, out}, f32_), ValueRange{t3, x2},
                      filled(emptyRows({out}, f32_), constF32(b_, 0.0f)),
                      {map(3, {0, 1, 2}), map(3, {0, 2}), map(3, {0, 1})},
                      {IteratorType::parallel, IteratorType::parallel, IteratorType::reduction},
                      [&](OpBuilder& b, Location loc, ValueRange v) {
                        // reassoc: the sum over j may be split into SIMD partial sums (LLVM vectorises it).
                        auto flags = arith::FastMathFlags::reassoc | arith::FastMathFlags::contract;
                        Value p = b.create<arith::MulFOp>(loc, v[0], v[1], flags);
                        b.create<linalg::YieldOp>(loc, ValueRange{b.create<arith::AddFOp>(loc, v[2], p, flags)});
                      });
    return l.has(Role::bias) ? addBias(y, param(l, Role::bias, {out})) : y;
  }

  // ---- Rows of S values with per-row statistics (the norms; Softmax along the last dim) -------------------
  // x [N, R * S] as rows of S values: x itself where R is 1, else [N, R, S]. The loops of the generics on rows
  // are the row dims then the column (the S values of a row).
  struct Rows {
    Rows(FunctionBuilder& f, Value input, int64_t R, int64_t S)
        : expanded(R != 1), x(expanded ? f.expandRows(input, {R, S}) : input),
          trailing(expanded ? SmallVector<int64_t>{R, S} : SmallVector<int64_t>{S}) {
      const auto loops = static_cast<unsigned>(trailing.size() + 1);
      all = AffineMap::getMultiDimIdentityMap(loops, f.b_.getContext());
      perRow = all.getMajorSubMap(loops - 1);
      column = all.getMinorSubMap(1);
      parallel.assign(loops, IteratorType::parallel);
    }
    bool expanded;  // x is a view of the input as [N, R, S]: results are collapsed back to [N, R * S]
    Value x;
    SmallVector<int64_t> trailing;  // x's dims after N
    AffineMap all, perRow, column;   // maps of x, of a per-row statistic, of a per-column parameter
    SmallVector<IteratorType> parallel;
    SmallVector<int64_t> rowTrailing() const { return {trailing.begin(), trailing.end() - 1}; }
  };
  // Per row: the sum (or with `max`, the largest but NaN: largerNotNaN) of term(v, m) over the row's S values v of
  // `values` (rows.x or a tensor of its shape; m: perRow's value for the row, or null). Lowered as loops it would
  // be a chain of scalar operations through memory; RowStatisticsToVector reduces in vector registers.
  Value rowReduce(const Rows& rows, Value values, Value perRow, bool max,
                  function_ref<Value(OpBuilder&, Location, Value, Value)> term) {
    SmallVector<Value> ins{values};
    SmallVector<AffineMap> maps{rows.all};
    if (perRow) {
      ins.push_back(perRow);
      maps.push_back(rows.perRow);
    }
    maps.push_back(rows.perRow);
    SmallVector<IteratorType> iterators = rows.parallel;
    iterators.back() = IteratorType::reduction;
    const float start = max ? -std::numeric_limits<float>::infinity() : 0.0f;
    Value init = filled(emptyRows(rows.rowTrailing(), f32_), constF32(b_, start));
    return generic(init.getType(), ins, init, maps, iterators, [&](OpBuilder& b, Location loc, ValueRange v) {
      Value t = term(b, loc, v[0], perRow ? v[1] : Value{});
      Value next = max ? largerNotNaN(b, loc, v.back(), t) : b.create<arith::AddFOp>(loc, v.back(), t).getResult();
      b.create<linalg::YieldOp>(loc, next);
    });
  }
  Value rowSums(const Rows& rows, Value perRow, function_ref<Value(OpBuilder&, Location, Value, Value)> term) {
    return rowReduce(rows, rows.x, perRow, false, term);
  }
  // f of per-row values, per row.
  Value statsMap(const Rows& rows, ValueRange ins, function_ref<Value(OpBuilder&, Location, ValueRange)> f) {
    return mapEach(rows.rowTrailing(), ins, f);
  }
  // f of tensors [N, trailing...], value by value.
  Value mapEach(ArrayRef<int64_t> trailing, ValueRange ins, function_ref<Value(OpBuilder&, Location, ValueRange)> f) {
    Value out = emptyRows(trailing, f32_);
    const auto loops = static_cast<unsigned>(trailing.size() + 1);
    SmallVector<AffineMap> maps(ins.size() + 1, AffineMap::getMultiDimIdentityMap(loops, b_.getContext()));
    return generic(out.getType(), ins, out, maps, SmallVector<IteratorType>(loops, IteratorType::parallel),
                   [&](OpBuilder& b, Location loc, ValueRange v) { b.create<linalg::YieldOp>(loc, ValueRange{f(b, loc, v)}); });
  }
  // What Softmax multiplies exp(x - max) by, 1 / sum, or what LogSoftmax subtracts from x - max, log(sum).
  Value softmaxScale(OpBuilder& b, Location loc, Value sum, bool log) {
    return log ? b.create<math::LogOp>(loc, sum).getResult()
               : b.create<arith::DivFOp>(loc, constF32(b, 1.0f), sum).getResult();
  }

  // ---- Softmax along one per-sample dim: exp(x - max) / sum(exp(x - max)); LogSoftmax: x - max - log(sum) ---
  // Along the last dim, on rows (rowSoftmax); along another, on x viewed as [N, A, S, B], which
  // RowStatisticsToVector runs for 16 positions of B at a time, e in a scratch block of S x 16 values.
  Value softmax(const ir::Layer& l, Value x, bool log) {
    const int axis = static_cast<int>(attr(l, "axis"));
    const int64_t A = l.in.product(0, axis), S = l.in.sizes[axis], B = l.in.product(axis + 1, l.in.rank);
    if (B == 1) return rowSoftmax(Rows(*this, x, A, S), log);
    Value x4 = expandRows(x, {A, S, B});
    auto par = IteratorType::parallel, red = IteratorType::reduction;
    const AffineMap all = map(4, {0, 1, 2, 3}), perPosition = map(4, {0, 1, 3});
    const SmallVector<AffineMap> reduceMaps{all, perPosition};
    const SmallVector<IteratorType> reduceIters{par, par, red, par};
    auto stats = RankedTensorType::get({kDyn, A, B}, f32_);
    Value max = generic(stats, ValueRange{x4}, filled(emptyRows({A, B}, f32_), constF32(b_, -std::numeric_limits<float>::infinity())),
                        reduceMaps, reduceIters, [&](OpBuilder& b, Location loc, ValueRange v) {
                          b.create<linalg::YieldOp>(loc, ValueRange{largerNotNaN(b, loc, v[1], v[0])});
                        });
    const SmallVector<AffineMap> pointMaps{all, perPosition, all};
    const SmallVector<IteratorType> pointIters{par, par, par, par};
    Value e = generic(x4.getType(), ValueRange{x4, max}, emptyRows({A, S, B}, f32_), pointMaps, pointIters,
                      [&](OpBuilder& b, Location loc, ValueRange v) {
                        Value d = b.create<arith::SubFOp>(loc, v[0], v[1]);
                        b.create<linalg::YieldOp>(loc, ValueRange{b.create<math::ExpOp>(loc, d)});
                      });
    Value sum = generic(stats, ValueRange{e}, filled(emptyRows({A, B}, f32_), constF32(b_, 0.0f)), reduceMaps,
                        reduceIters, [&](OpBuilder& b, Location loc, ValueRange v) {
                          b.create<linalg::YieldOp>(loc, ValueRange{b.create<arith::AddFOp>(loc, v[0], v[1])});
                        });
    // 1 / sum or log(sum), once per position of the inner dims: in the generic over every value, LLVM computed
    // it for each value (S times over). Softmax multiplies by the reciprocal, as rowSoftmax and the ET kernel.
    Value scale = mapEach({A, B}, {sum}, [&](OpBuilder& b, Location loc, ValueRange v) {
      return softmaxScale(b, loc, v[0], log);
    });
    if (log)  // (x - max) - log(sum), as PyTorch: max + log(sum) would round first
      return collapseRows(generic(x4.getType(), ValueRange{x4, max, scale}, emptyRows({A, S, B}, f32_),
                                  {all, perPosition, perPosition, all}, pointIters,
                                  [&](OpBuilder& b, Location loc, ValueRange v) {
                                    Value d = b.create<arith::SubFOp>(loc, v[0], v[1]);
                                    b.create<linalg::YieldOp>(loc, ValueRange{b.create<arith::SubFOp>(loc, d, v[2])});
                                  }));
    Value y = generic(x4.getType(), ValueRange{e, scale}, emptyRows({A, S, B}, f32_), pointMaps, pointIters,
                      [&](OpBuilder& b, Location loc, ValueRange v) {
                        b.create<linalg::YieldOp>(loc, ValueRange{b.create<arith::MulFOp>(loc, v[0], v[1])});
                      });
    return collapseRows(y);
  }
  // The max, then the sum of e = exp(x - max), per row; then each value: e * (1 / sum), or (x - max) - log(sum).
  // RowStatisticsToVector runs it all row by row, Softmax's e kept in a scratch row between its two uses.
  Value rowSoftmax(const Rows& rows, bool log) {
    auto value = [](OpBuilder&, Location, Value v, Value) { return v; };
    Value max = rowReduce(rows, rows.x, {}, true, value);
    Value e = generic(rows.x.getType(), ValueRange{rows.x, max}, emptyRows(rows.trailing, f32_),
                      {rows.all, rows.perRow, rows.all}, rows.parallel, [&](OpBuilder& b, Location loc, ValueRange v) {
                        Value d = b.create<arith::SubFOp>(loc, v[0], v[1]);
                        b.create<linalg::YieldOp>(loc, ValueRange{b.create<math::ExpOp>(loc, d)});
                      });
    Value sum = rowReduce(rows, e, {}, false, value);
    Value scale = statsMap(rows, {sum}, [&](OpBuilder& b, Location loc, ValueRange v) {
      return softmaxScale(b, loc, v[0], log);
    });
    const SmallVector<AffineMap> maps{rows.all, rows.perRow, rows.perRow, rows.all};
    Value y = generic(rows.x.getType(), ValueRange{log ? rows.x : e, max, scale}, emptyRows(rows.trailing, f32_), maps,
                      rows.parallel, [&](OpBuilder& b, Location loc, ValueRange v) {
                        // (x - max) - log(sum), as PyTorch: max + log(sum) would round first
                        Value r = log ? b.create<arith::SubFOp>(loc, b.create<arith::SubFOp>(loc, v[0], v[1]), v[2]).getResult()
                                      : b.create<arith::MulFOp>(loc, v[0], v[2]).getResult();
                        b.create<linalg::YieldOp>(loc, r);
                      });
    return rows.expanded ? collapseRows(y) : y;
  }

  // ---- Dropout (train mode): keep element e iff its Philox4x32-10 draw is >= p ---------------------------
  // Element e counts row-major over the whole batch; counter (e / 4 low, e / 4 high, stream, step), key = the
  // seed, word e % 4: bit for bit the mask of runtime/philox.hpp's DropoutStream.
  Value dropout(const ir::Layer& l, Value x) {
    const auto p = static_cast<float>(attr(l, "p"));
    const auto stream = static_cast<uint32_t>(attr(l, "stream"));
    if (!training_ || p == 0.0f) return x;
    const int64_t F = features(x);
    const float scale = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);  // p = 1 keeps nothing: every element x * 0
    return generic(x.getType(), ValueRange{x}, emptyRows({F}, f32_), {map(2, {0, 1}), map(2, {0, 1})},
                   {IteratorType::parallel, IteratorType::parallel}, [&](OpBuilder& b, Location loc, ValueRange v) {
                     auto i64 = b.getI64Type(), i32 = b.getI32Type();
                     Value row = b.create<arith::IndexCastOp>(loc, i64, b.create<linalg::IndexOp>(loc, 0));
                     Value col = b.create<arith::IndexCastOp>(loc, i64, b.create<linalg::IndexOp>(loc, 1));
                     Value e = b.create<arith::AddIOp>(
                         loc, b.create<arith::MulIOp>(loc, row, b.create<arith::ConstantOp>(loc, b.getI64IntegerAttr(F))),
                         col);
                     Value block = b.create<arith::ShRUIOp>(loc, e, b.create<arith::ConstantOp>(loc, b.getI64IntegerAttr(2)));
                     Value word = b.create<arith::TruncIOp>(
                         loc, i32, b.create<arith::AndIOp>(loc, e, b.create<arith::ConstantOp>(loc, b.getI64IntegerAttr(3))));
                     auto low = [&](Value v64) { return b.create<arith::TruncIOp>(loc, i32, v64).getResult(); };
                     auto high = [&](Value v64) {
                       return low(b.create<arith::ShRUIOp>(loc, v64, b.create<arith::ConstantOp>(loc, b.getI64IntegerAttr(32))));
                     };
                     Value c[4] = {low(block), high(block), constI32(b, stream), low(step_)};
                     Value k0 = low(seed_), k1 = high(seed_);
                     for (int round = 0; round < 10; ++round) {
                       if (round > 0) {
                         k0 = b.create<arith::AddIOp>(loc, k0, constI32(b, 0x9E3779B9u));
                         k1 = b.create<arith::AddIOp>(loc, k1, constI32(b, 0xBB67AE85u));
                       }
                       auto p0 = b.create<arith::MulUIExtendedOp>(loc, constI32(b, 0xD2511F53u), c[0]);
                       auto p1 = b.create<arith::MulUIExtendedOp>(loc, constI32(b, 0xCD9E8D57u), c[2]);
                       Value n0 = b.create<arith::XOrIOp>(loc, b.create<arith::XOrIOp>(loc, p1.getHigh(), c[1]), k0);
                       Value n2 = b.create<arith::XOrIOp>(loc, b.create<arith::XOrIOp>(loc, p0.getHigh(), c[3]), k1);
                       c[0] = n0;
                       c[1] = p1.getLow();
                       c[2] = n2;
                       c[3] = p0.getLow();
                     }
                     Value draw = c[3];
                     for (int w = 2; w >= 0; --w) {
                       Value is = b.create<arith::CmpIOp>(loc, arith::CmpIPredicate::eq, word, constI32(b, w));
                       draw = b.create<arith::SelectOp>(loc, is, c[w], draw);
                     }
                     // to_unit_float: the top 24 bits, times 2^-24 (exact in float32).
                     Value bits = b.create<arith::ShRUIOp>(loc, draw, constI32(b, 8));
                     Value u = b.create<arith::MulFOp>(loc, b.create<arith::UIToFPOp>(loc, f32_, bits),
                                                       constF32(b, 1.0f / 16777216.0f));
                     Value keep = b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OGE, u, constF32(b, p));
                     // x times the mask, as PyTorch: a dropped NaN or Inf gives NaN, not 0
                     Value mask = b.create<arith::SelectOp>(loc, keep, constF32(b, scale), constF32(b, 0.0f));
                     b.create<linalg::YieldOp>(loc, ValueRange{b.create<arith::MulFOp>(loc, v[0], mask)});
                   });
  }

  // ---- BatchNorm1d over [N, C] or [N, C, L] --------------------------------------------------------------
  // y = x * scale[c] + shift[c], scale = weight / sqrt(var + eps), shift = bias - mean * scale, with scale and
  // shift computed in f64 as the expression-template kernel does. The statistics are the running ones in eval
  // mode, else the batch's (mean and biased variance over N and L, accumulated in f64), and then the running
  // statistics are updated in place: running = (1 - m) running + m batch, unbiased variance, m = momentum or
  // 1 / num_batches_tracked.
  Value batchNorm(const ir::Layer& l, Value x) {
    const int64_t C = l.in.sizes[0], L = l.in.rank == 2 ? l.in.sizes[1] : 1;
    auto par = IteratorType::parallel, red = IteratorType::reduction;
    auto vecF64 = RankedTensorType::get({C}, f64_);
    const bool trackRunningStats = attr(l, "track_running_stats") != 0;
    const double eps = attr(l, "eps");
    const bool batchStats = training_ || !trackRunningStats;
    Value x3 = expandRows(x, {C, L});
    Value mean, var;
    if (batchStats) {
      Value count = b_.create<arith::MulFOp>(
          loc_, b_.create<arith::SIToFPOp>(loc_, f64_, b_.create<arith::IndexCastOp>(loc_, b_.getI64Type(), n_)),
          constF64(b_, static_cast<double>(L)));
      const SmallVector<AffineMap> sumMaps{map(3, {0, 1, 2}), map(3, {1})};
      const SmallVector<IteratorType> sumIters{red, par, red};
      Value zeros = filled(b_.create<tensor::EmptyOp>(loc_, ArrayRef<int64_t>{C}, f64_), constF64(b_, 0.0));
      Value sum = generic(vecF64, ValueRange{x3}, zeros, sumMaps, sumIters, [&](OpBuilder& b, Location loc, ValueRange v) {
        b.create<linalg::YieldOp>(loc, ValueRange{b.create<arith::AddFOp>(loc, v[1], b.create<arith::ExtFOp>(loc, f64_, v[0]))});
      });
      mean = mapVector(vecF64, {sum}, [&](OpBuilder& b, Location loc, ValueRange v) {
        return b.create<arith::DivFOp>(loc, v[0], count).getResult();
      });
      Value sq = generic(vecF64, ValueRange{x3, mean}, zeros, {map(3, {0, 1, 2}), map(3, {1}), map(3, {1})}, sumIters,
                         [&](OpBuilder& b, Location loc, ValueRange v) {
                           Value d = b.create<arith::SubFOp>(loc, b.create<arith::ExtFOp>(loc, f64_, v[0]), v[1]);
                           b.create<linalg::YieldOp>(loc, ValueRange{b.create<arith::AddFOp>(loc, v[2], b.create<arith::MulFOp>(loc, d, d))});
                         });
      var = mapVector(vecF64, {sq}, [&](OpBuilder& b, Location loc, ValueRange v) {
        return b.create<arith::DivFOp>(loc, v[0], count).getResult();
      });
      if (training_ && trackRunningStats) updateRunningStats(l, mean, var, count);
    } else {
      auto widen = [&](int index) {
        return mapVector(vecF64, {buffer(index, {C})}, [&](OpBuilder& b, Location loc, ValueRange v) {
          return b.create<arith::ExtFOp>(loc, f64_, v[0]).getResult();
        });
      };
      mean = widen(l.param(Role::running_mean));
      var = widen(l.param(Role::running_var));
    }
    SmallVector<Value> scaleIns{mean, var};
    const bool hasWeight = l.has(Role::weight), hasBias = l.has(Role::bias);
    if (hasWeight) scaleIns.push_back(param(l, Role::weight, {C}));
    if (hasBias) scaleIns.push_back(param(l, Role::bias, {C}));
    auto vecF32 = RankedTensorType::get({C}, f32_);
    auto scaleOf = [&](OpBuilder& b, Location loc, ValueRange v) {
      Value invstd = b.create<arith::DivFOp>(
          loc, constF64(b, 1.0), b.create<math::SqrtOp>(loc, b.create<arith::AddFOp>(loc, v[1], constF64(b, eps))));
      return hasWeight ? b.create<arith::MulFOp>(loc, b.create<arith::ExtFOp>(loc, f64_, v[2]), invstd).getResult() : invstd;
    };
    Value scale = mapVector(vecF32, scaleIns, [&](OpBuilder& b, Location loc, ValueRange v) {
      return b.create<arith::TruncFOp>(loc, f32_, scaleOf(b, loc, v)).getResult();
    });
    Value shift = mapVector(vecF32, scaleIns, [&](OpBuilder& b, Location loc, ValueRange v) {
      Value ms = b.create<arith::MulFOp>(loc, v[0], scaleOf(b, loc, v));
      Value bias = hasBias ? b.create<arith::ExtFOp>(loc, f64_, v[hasWeight ? 3 : 2]).getResult() : constF64(b, 0.0);
      return b.create<arith::TruncFOp>(loc, f32_, b.create<arith::SubFOp>(loc, bias, ms)).getResult();
    });
    auto affine = [&](OpBuilder& b, Location loc, ValueRange v) {
      b.create<linalg::YieldOp>(loc, ValueRange{b.create<math::FmaOp>(loc, v[0], v[1], v[2])});
    };
    // [N, C] as it is: a 2-D elementwise op, which fuses into a Linear's epilogue.
    if (L == 1)
      return generic(x.getType(), ValueRange{x, scale, shift}, emptyRows({C}, f32_),
                     {map(2, {0, 1}), map(2, {1}), map(2, {1}), map(2, {0, 1})}, {par, par}, affine);
    Value y = generic(x3.getType(), ValueRange{x3, scale, shift}, emptyRows({C, L}, f32_),
                      {map(3, {0, 1, 2}), map(3, {1}), map(3, {1}), map(3, {0, 1, 2})}, {par, par, par}, affine);
    return collapseRows(y);
  }
  // f(ins...) per element of [C] vectors.
  Value mapVector(RankedTensorType result, ValueRange ins, function_ref<Value(OpBuilder&, Location, ValueRange)> f) {
    SmallVector<AffineMap> maps(ins.size() + 1, map(1, {0}));
    Value out = b_.create<tensor::EmptyOp>(loc_, result.getShape(), result.getElementType());
    return generic(result, ins, out, maps, {IteratorType::parallel}, [&](OpBuilder& b, Location loc, ValueRange v) {
      b.create<linalg::YieldOp>(loc, ValueRange{f(b, loc, v)});
    });
  }
  void updateRunningStats(const ir::Layer& l, Value mean, Value var, Value count) {
    const int64_t C = l.in.sizes[0];
    // num_batches_tracked += 1, and the momentum of this update.
    Value nbtMemref = func_.getArgument(3 + l.param(Role::num_batches_tracked));
    const double momentum = attr(l, "momentum");  // NaN: None, a cumulative average
    Value zero = b_.create<arith::ConstantIndexOp>(loc_, 0);
    Value nbt = b_.create<arith::AddIOp>(loc_, b_.create<memref::LoadOp>(loc_, nbtMemref, ValueRange{zero}),
                                         b_.create<arith::ConstantOp>(loc_, b_.getI64IntegerAttr(1)));
    Value m = !std::isnan(momentum) ? constF64(b_, momentum)
                             : b_.create<arith::DivFOp>(loc_, constF64(b_, 1.0), b_.create<arith::SIToFPOp>(loc_, f64_, nbt)).getResult();
    Value unbias = b_.create<arith::DivFOp>(loc_, count, b_.create<arith::SubFOp>(loc_, count, constF64(b_, 1.0)));
    auto vecF32 = RankedTensorType::get({C}, f32_);
    auto update = [&](int index, Value batch, bool unbiased) {
      Value running = mapVector(vecF32, {buffer(index, {C}), batch}, [&](OpBuilder& b, Location loc, ValueRange v) {
        Value old = b.create<arith::MulFOp>(loc, b.create<arith::SubFOp>(loc, constF64(b, 1.0), m),
                                            b.create<arith::ExtFOp>(loc, f64_, v[0]));
        Value now = unbiased ? b.create<arith::MulFOp>(loc, v[1], unbias).getResult() : v[1];
        Value sum = b.create<arith::AddFOp>(loc, old, b.create<arith::MulFOp>(loc, m, now));
        return b.create<arith::TruncFOp>(loc, f32_, sum).getResult();
      });
      pendingWrites_.push_back({running, func_.getArgument(3 + index)});
    };
    update(l.param(Role::running_mean), mean, false);
    update(l.param(Role::running_var), var, true);
    b_.create<memref::StoreOp>(loc_, nbt, nbtMemref, ValueRange{zero});
  }

  // ---- LayerNorm and RMSNorm over the last norm_size values of each sample -----------------------------
  // LayerNorm: (x - mean) / sqrt(var + eps) * weight + bias. RMSNorm: x / sqrt(mean(x^2) + eps) * weight, or
  // x / (sqrt(mean(x^2)) + eps) * weight. In float, as the expression-template kernel (et/norms.hpp) and
  // PyTorch's CPU kernels: the sums in 16 partial sums, the variance from the deviations (two passes).
  // x is viewed as rows of S values, [N, S] (or [N, R, S] where a sample holds R of them): row sums, then per-row
  // statistics, then each value from its row's. The contraction-to-vector pass runs all three row by row
  // (RowStatisticsToVector); the [N, S] view lets linalg's elementwise fusion merge a following activation.
  Value norm(const ir::Layer& l, Value x) {
    const int64_t S = static_cast<int64_t>(attr(l, "norm_size")), R = l.in.numel() / S;
    const bool layerNorm = l.kind == nn::LayerNorm<1>::kind;
    const float epsValue = static_cast<float>(attr(l, "eps"));
    const bool epsAddedToRms = !layerNorm && attr(l, "eps_added_to_rms") != 0;
    const Rows rows(*this, x, R, S);
    const float size = static_cast<float>(S);
    Value mean;
    if (layerNorm) {
      Value sum = rowSums(rows, {}, [&](OpBuilder&, Location, Value v, Value) { return v; });
      mean = statsMap(rows, {sum}, [&](OpBuilder& b, Location loc, ValueRange v) {
        return b.create<arith::DivFOp>(loc, v[0], constF32(b, size)).getResult();
      });
    }
    Value sq = rowSums(rows, mean, [&](OpBuilder& b, Location loc, Value v, Value m) {
      Value d = m ? b.create<arith::SubFOp>(loc, v, m).getResult() : v;
      return b.create<arith::MulFOp>(loc, d, d).getResult();
    });
    // The factor each value is multiplied by: 1 / sqrt(ms + eps), or 1 / (sqrt(ms) + eps).
    Value factor = statsMap(rows, {sq}, [&](OpBuilder& b, Location loc, ValueRange v) {
      Value ms = b.create<arith::DivFOp>(loc, v[0], constF32(b, size));
      Value eps = constF32(b, epsValue);
      Value denom = epsAddedToRms ? b.create<arith::AddFOp>(loc, b.create<math::SqrtOp>(loc, ms), eps).getResult()
                                       : b.create<math::SqrtOp>(loc, b.create<arith::AddFOp>(loc, ms, eps)).getResult();
      return b.create<arith::DivFOp>(loc, constF32(b, 1.0f), denom).getResult();
    });
    SmallVector<Value> ins{rows.x, factor};
    SmallVector<AffineMap> maps{rows.all, rows.perRow};
    if (layerNorm) {
      ins.push_back(mean);
      maps.push_back(rows.perRow);
    }
    const int weightAt = static_cast<int>(ins.size());
    const bool hasWeight = l.has(Role::weight), hasBias = l.has(Role::bias);
    if (hasWeight) {
      ins.push_back(param(l, Role::weight, {S}));
      maps.push_back(rows.column);
    }
    const int biasAt = static_cast<int>(ins.size());
    if (hasBias) {
      ins.push_back(param(l, Role::bias, {S}));
      maps.push_back(rows.column);
    }
    maps.push_back(rows.all);
    Value y = generic(rows.x.getType(), ins, emptyRows(rows.trailing, f32_), maps, rows.parallel,
                      [&](OpBuilder& b, Location loc, ValueRange v) {
                        Value d = layerNorm ? b.create<arith::SubFOp>(loc, v[0], v[2]).getResult() : v[0];
                        Value r = b.create<arith::MulFOp>(loc, d, v[1]);
                        if (hasWeight) r = b.create<arith::MulFOp>(loc, r, v[weightAt]);
                        if (hasBias) r = b.create<arith::AddFOp>(loc, r, v[biasAt]);
                        b.create<linalg::YieldOp>(loc, ValueRange{r});
                      });
    return rows.expanded ? collapseRows(y) : y;
  }
  const ir::Network& net_;
  bool training_;
  OpBuilder b_;
  Location loc_;
  Type f32_, f64_;
  func::FuncOp func_;
  Value n_, seed_, step_;
  std::map<int, Value> buffers_;
  std::vector<std::pair<Value, Value>> pendingWrites_;
};

// Every layer kind's lowering, with the parameters and attributes it reads. The activations all lower through
// FunctionBuilder::activation, each from the list in dsl/layers/activations.hpp.
const std::map<std::string_view, Lowering>& lowerings() {
  using F = FunctionBuilder;
  static const std::map<std::string_view, Lowering> table = [] {
    auto view = [](F&, const ir::Layer&, Value x, Value) { return x; };
    std::map<std::string_view, Lowering> t{
        {"linear", {[](F& f, const ir::Layer& l, Value x, Value) { return f.linear(l, x); }, {Role::weight}, {}}},
        {"bilinear", {[](F& f, const ir::Layer& l, Value x, Value x2) { return f.bilinear(l, x, x2); }, {Role::weight}, {}}},
        {"softmax", {[](F& f, const ir::Layer& l, Value x, Value) { return f.softmax(l, x, false); }, {}, {"axis"}}},
        {"log_softmax", {[](F& f, const ir::Layer& l, Value x, Value) { return f.softmax(l, x, true); }, {}, {"axis"}}},
        {"flatten", {view, {}, {}}},
        {"unflatten", {view, {}, {}}},
        {"identity", {view, {}, {}}},
        {"dropout", {[](F& f, const ir::Layer& l, Value x, Value) { return f.dropout(l, x); }, {}, {"p", "stream"}}},
        {"batch_norm", {[](F& f, const ir::Layer& l, Value x, Value) { return f.batchNorm(l, x); }, {},
                        {"eps", "momentum", "track_running_stats"}}},
        {"layer_norm", {[](F& f, const ir::Layer& l, Value x, Value) { return f.norm(l, x); }, {}, {"eps", "norm_size"}}},
        {"rms_norm", {[](F& f, const ir::Layer& l, Value x, Value) { return f.norm(l, x); }, {},
                      {"eps", "norm_size", "eps_added_to_rms"}}},
    };
    std::apply(
        [&](auto... act) {
          ([&]<class Act>(Act) {
            std::vector<std::string_view> names;
            std::apply([&](auto... field) { (names.push_back(field.name), ...); }, Act::fields());
            t.emplace(Act::kind, Lowering{[](F& f, const ir::Layer& l, Value x, Value) { return f.activation<Act>(l, x); },
                                          {}, names});
          }(act), ...);
        },
        nn::activations{});
    return t;
  }();
  return table;
}

// A Linear of at most 4 outputs in dot-product chunks (lowering.hpp): zeros where W has no value for a lane, W's
// [out, chunks, c] block transposed into [chunks, out, c] with rows `lanes` apart, then its last K % c inputs.
void packDotChunks(OpBuilder& b, Location loc, Value weight, Value packed, int64_t at, int64_t in, int64_t out,
                   int64_t lanes) {
  const int64_t c = lanes / dotChunkOutputs(out), chunks = in / c, tail = in % c;
  if (out < dotChunkOutputs(out) || tail > 0) {
    Value zero = b.create<arith::ConstantOp>(loc, b.getF32FloatAttr(0.0f));
    Value region = rowMajorView(b, loc, packed, at, {(in + c - 1) / c * lanes});
    b.create<linalg::FillOp>(loc, ValueRange{zero}, ValueRange{region});
  }
  if (chunks > 0) {
    Value w = stridedView(b, loc, weight, 0, {out, chunks, c}, {in, c, 1});
    Value wt = stridedView(b, loc, packed, at, {chunks, out, c}, {lanes, c, 1});
    b.create<linalg::TransposeOp>(loc, w, wt, ArrayRef<int64_t>{1, 0, 2});
  }
  if (tail > 0) {
    Value w = stridedView(b, loc, weight, chunks * c, {out, tail}, {in, 1});
    Value wt = stridedView(b, loc, packed, at + chunks * lanes, {out, tail}, {c, 1});
    b.create<linalg::CopyOp>(loc, w, wt);
  }
}

// <name>_pack_impl(buffers..., packed): W^T of each packed Linear into its place in `packed`, as one
// linalg.transpose of W's rows, panel by panel ([panels, width, In] into [panels, In, width]), and one for a
// last narrower panel, which is zeroed first where its columns are past the outputs (contraction_to_vector.cpp
// makes the transposes loops of 16 x 16 blocks through registers); a Linear of at most 4 outputs in chunks
// (packDotChunks).
void buildPackFunction(ModuleOp module, const ir::Network& net, const std::string& name, RegisterTiles tiles) {
  const int64_t panelColumns = tiles.panelColumns;
  OpBuilder b(module.getContext());
  Location loc = b.getUnknownLoc();
  b.setInsertionPointToEnd(module.getBody());
  auto fn = b.create<func::FuncOp>(loc, name, FunctionType::get(module.getContext(), bufferArguments(b, net), {}));
  fn.setPrivate();
  b.setInsertionPointToStart(fn.addEntryBlock());
  Value packed = fn.getArguments().back();
  for (std::size_t i = 0; i < net.layers.size(); ++i) {
    const ir::Layer& l = net.layers[i];
    const int64_t cols = packedColumns(l), in = l.in.last(), out = l.out.last(), panels = out / panelColumns;
    if (cols == 0) continue;
    Value weight = fn.getArgument(static_cast<unsigned>(l.param(Role::weight)));
    const int64_t at = packedOffset(net, i);
    if (out <= kDotOut) {
      packDotChunks(b, loc, weight, packed, at, in, out, tiles.dotLanes);
      continue;
    }
    if (panels > 0) {
      Value rows = rowMajorView(b, loc, weight, 0, {panels, panelColumns, in});
      Value wt = rowMajorView(b, loc, packed, at, {panels, in, panelColumns});
      b.create<linalg::TransposeOp>(loc, rows, wt, ArrayRef<int64_t>{0, 2, 1});
    }
    const int64_t first = panels * panelColumns, width = cols - first, rows = out - first;
    if (width == 0) continue;
    if (rows < width) {
      Value zero = b.create<arith::ConstantOp>(loc, b.getF32FloatAttr(0.0f));
      Value panel = rowMajorView(b, loc, packed, at + first * in, {in, width});
      b.create<linalg::FillOp>(loc, ValueRange{zero}, ValueRange{panel});
    }
    Value w = rowMajorView(b, loc, weight, first * in, {rows, in});
    Value wt = stridedView(b, loc, packed, at + first * in, {in, rows}, {width, 1});
    b.create<linalg::TransposeOp>(loc, w, wt, ArrayRef<int64_t>{1, 0});
  }
  b.create<func::ReturnOp>(loc);
}

}  // namespace

void checkLowering(const ir::Layer& l) {
  auto fail = [&](const std::string& what) {
    throw Error(fmt::format("kiln::mlir: layer {} ({}): {}", l.path.view(), l.name.view(), what));
  };
  const auto it = lowerings().find(l.kind);
  if (it == lowerings().end()) fail(fmt::format("no MLIR lowering for a layer of kind \"{}\"", l.kind));
  for (const Role r : it->second.roles)
    if (!l.has(r)) fail(fmt::format("has no {} buffer", role_name(r)));
  for (const std::string_view a : it->second.attributes)
    if (!l.attributes.find(a)) fail(fmt::format("has no attribute \"{}\"", a));
  if (l.kind == "batch_norm" && attr(l, "track_running_stats") != 0 &&
      !(l.has(Role::running_mean) && l.has(Role::running_var) && l.has(Role::num_batches_tracked)))
    fail("tracks running statistics but has no running_mean, running_var or num_batches_tracked buffer");
}

// Softmax's max is a run of these from acc = -inf. PyTorch's max is NaN where a value is, but a NaN needs no
// carrying there: exp(NaN - max) is NaN, and the sum takes it to every value of the row, as PyTorch's NaN max does;
// -0 and +0 as the max give the same outputs. A compare and a select is x86's maxps, one instruction; the
// max as arith.maximumf, which carries NaN and orders the zeros, took six, and Softmax over 256 values ran 1.3-1.7x
// longer (Intel Xeon, with maximumf's scalar reduction across the lanes).
Value largerNotNaN(OpBuilder& b, Location loc, Value acc, Value t) {
  Value greater = b.create<arith::CmpFOp>(loc, arith::CmpFPredicate::OGT, t, acc);
  return b.create<arith::SelectOp>(loc, greater, t, acc);
}

Value stridedView(OpBuilder& b, Location loc, Value flat, int64_t offset, ArrayRef<int64_t> sizes,
                  ArrayRef<int64_t> strides) {
  auto type = MemRefType::get(sizes, b.getF32Type(), StridedLayoutAttr::get(b.getContext(), offset, strides));
  return b.create<memref::ReinterpretCastOp>(loc, type, flat, offset, sizes, strides);
}

Value rowMajorView(OpBuilder& b, Location loc, Value flat, int64_t offset, ArrayRef<int64_t> sizes) {
  SmallVector<int64_t> strides(sizes.size(), 1);
  for (std::size_t d = sizes.size() - 1; d > 0; --d) strides[d - 1] = strides[d] * sizes[d];
  return stridedView(b, loc, flat, offset, sizes, strides);
}

int64_t packedColumns(const ir::Layer& layer) {
  if (layer.kind != "linear") return 0;
  if (layer.out.last() <= kDotOut) return 16;  // room for the chunks of any `lanes` up to 16
  return (layer.out.last() + 15) / 16 * 16;
}

int64_t packedOffset(const ir::Network& net, std::size_t layer) {
  int64_t offset = 0;
  for (std::size_t i = 0; i < layer; ++i) offset += packedColumns(net.layers[i]) * net.layers[i].in.last();
  return offset;
}

RegisterTiles registerTiles(bool wideRegisterFile) {
  if (wideRegisterFile) return {.panelColumns = 64, .dotLanes = 16};
  return {.panelColumns = 16, .dotLanes = 8};
}

void buildNetworkFunctions(ModuleOp module, const ir::Network& net, const std::string& name, RegisterTiles tiles,
                           Modes modes) {
  for (bool training : {false, true}) {
    if (modes != Modes::both && training != (modes == Modes::train)) continue;
    FunctionBuilder fb(module, net, training, implName(name, training));
    fb.build();
  }
  if (modes != Modes::train) buildPackFunction(module, net, packImplName(name), tiles);
}

}  // namespace kiln::mlir_backend

// The ladder: which passes take a network from one stage to the next, LLVM IR and object code, and errors.
// No exception crosses MLIR or LLVM code (Debian builds them without): failures come back as diagnostics,
// collected here and thrown as kiln::Error once MLIR has returned.
#include "lowering.hpp"

#include <kiln/mlir/compiler.hpp>
#include <kiln/runtime/cpu.hpp>
#include <kiln/runtime/error.hpp>

#include <mlir/Dialect/Linalg/Transforms/Transforms.h>
#include <mlir/Dialect/Math/Transforms/Passes.h>
#include <mlir/ExecutionEngine/OptUtils.h>
#include <mlir/IR/Diagnostics.h>
#include <mlir/IR/MLIRContext.h>
#include <mlir/IR/Verifier.h>
#include <mlir/InitAllDialects.h>
#include <mlir/InitAllExtensions.h>
#include <mlir/InitAllPasses.h>
#include <mlir/Pass/PassManager.h>
#include <mlir/Pass/PassRegistry.h>
#include <mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h>
#include <mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h>
#include <mlir/Target/LLVMIR/Export.h>
#include <mlir/Transforms/GreedyPatternRewriteDriver.h>

#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/PassTimingInfo.h>
#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/Pass.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>

#include <fmt/format.h>

#include <array>
#include <mutex>
#include <thread>

namespace kiln::mlir {

using namespace ::mlir;
namespace backend = kiln::mlir_backend;

namespace {

// Math functions as polynomial approximations in arith ops, so that loops and tiles of them vectorise
// (MLIR's approximations of exp and tanh are accurate to a few ulp in float32).
struct MathApproximationPass : PassWrapper<MathApproximationPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(MathApproximationPass)
  StringRef getArgument() const final { return "kiln-math-approximation"; }
  void getDependentDialects(DialectRegistry& registry) const override {
    registry.insert<arith::ArithDialect, vector::VectorDialect, math::MathDialect>();
  }
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMathPolynomialApproximationPatterns(patterns);
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(patterns));
  }
};

// Fuses chains of elementwise linalg.generic ops (bias, activation, dropout) into one, and nothing else: no
// reshape propagation, which would turn the matmuls into generic contractions the next step does not know. A
// producer its consumer reads broadcast (BatchNorm1d's per-channel scale, a norm's per-row statistics) stays
// apart: fused, it would run once per element instead of once per channel or row.
struct FuseElementwisePass : PassWrapper<FuseElementwisePass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(FuseElementwisePass)
  StringRef getArgument() const final { return "kiln-fuse-elementwise"; }
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    linalg::populateElementwiseOpsFusionPatterns(patterns, [](OpOperand* fused) {
      Operation* producer = fused->get().getDefiningOp();
      auto consumer = dyn_cast<linalg::LinalgOp>(fused->getOwner());
      return producer && producer->hasOneUse() && consumer && consumer.getMatchingIndexingMap(fused).isPermutation();
    });
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(patterns));
  }
};

// Places the buffers a function allocates, and frees them at its return: the network's functions allocate their
// intermediate buffers at their top level and return no buffer. (MLIR's buffer-deallocation-pipeline put the frees
// in the same places, and took half of the linalg stage's time.) An allocation anywhere else fails the pass.
// The buffers of a small batch go on the stack, up to kStackBytes for all of a call's: their mallocs and frees
// were 6% of a call of tiny 16-32-32-4 at batch 1 on Zen 3 (the expression-template kernel keeps its scratch from
// call to call instead).
struct FreeAtReturnPass : PassWrapper<FreeAtReturnPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(FreeAtReturnPass)
  static constexpr int64_t kStackBytes = 32 * 1024;
  StringRef getArgument() const final { return "kiln-free-at-return"; }
  void runOnOperation() override {
    for (func::FuncOp fn : getOperation().getOps<func::FuncOp>())
      if (!fn.isExternal() && failed(freeAtReturn(fn))) return signalPassFailure();
  }
  static LogicalResult freeAtReturn(func::FuncOp fn) {
    auto ret = dyn_cast<func::ReturnOp>(fn.getBody().back().getTerminator());
    const bool returnsBuffer = llvm::any_of(fn.getResultTypes(), [](Type t) { return isa<BaseMemRefType>(t); });
    if (!fn.getBody().hasOneBlock() || !ret || returnsBuffer)
      return fn.emitError("kiln-free-at-return: a function of one block that returns no buffer was expected");
    SmallVector<memref::AllocOp> allocs;
    const WalkResult walk = fn.walk([&](memref::AllocOp alloc) {
      if (alloc->getBlock() != &fn.getBody().front()) {
        alloc.emitError("kiln-free-at-return: an allocation inside a loop or branch");
        return WalkResult::interrupt();
      }
      allocs.push_back(alloc);
      return WalkResult::advance();
    });
    if (walk.wasInterrupted()) return failure();
    Value stackBytes;  // what the buffers placed so far take on the stack
    for (memref::AllocOp alloc : allocs) stackBytes = placeBuffer(alloc, stackBytes, ret);
    return success();
  }
  // alloc on the stack if it fits in what is left of kStackBytes, else on the heap and freed before `ret`.
  // Returns the stack's bytes after it.
  static Value placeBuffer(memref::AllocOp alloc, Value stackBytes, func::ReturnOp ret) {
    OpBuilder b(alloc);
    const Location loc = alloc.getLoc();
    const MemRefType type = alloc.getType();
    auto index = [&](int64_t v) { return b.create<arith::ConstantIndexOp>(loc, v).getResult(); };
    int64_t fixedBytes = type.getElementTypeBitWidth() / 8;
    for (int64_t d : type.getShape())
      if (!ShapedType::isDynamic(d)) fixedBytes *= d;
    Value bytes = index(fixedBytes);
    for (Value d : alloc.getDynamicSizes()) bytes = b.create<arith::MulIOp>(loc, bytes, d);
    if (!stackBytes) stackBytes = index(0);
    Value total = b.create<arith::AddIOp>(loc, stackBytes, bytes);
    Value onStack = b.create<arith::CmpIOp>(loc, arith::CmpIPredicate::ule, total, index(kStackBytes));
    auto place = b.create<scf::IfOp>(
        loc, onStack,
        [&](OpBuilder& then, Location l) {
          Value buffer = then.create<memref::AllocaOp>(l, type, alloc.getDynamicSizes(), alloc.getSymbolOperands(),
                                                       alloc.getAlignmentAttr());
          then.create<scf::YieldOp>(l, buffer);
        },
        [&](OpBuilder& otherwise, Location l) {
          Value buffer = otherwise.create<memref::AllocOp>(l, type, alloc.getDynamicSizes(),
                                                           alloc.getSymbolOperands(), alloc.getAlignmentAttr());
          otherwise.create<scf::YieldOp>(l, buffer);
        });
    Value buffer = place.getResult(0);
    Value stackAfter = b.create<arith::SelectOp>(loc, onStack, total, stackBytes);
    alloc.getResult().replaceAllUsesWith(buffer);
    alloc.erase();
    OpBuilder atReturn(ret);
    Value onHeap = atReturn.create<arith::XOrIOp>(loc, onStack, atReturn.create<arith::ConstantIntOp>(loc, 1, 1));
    atReturn.create<scf::IfOp>(loc, onHeap, [&](OpBuilder& then, Location l) {
      then.create<memref::DeallocOp>(l, buffer);
      then.create<scf::YieldOp>(l);
    });
    return stackAfter;
  }
};

// The heap buffers of FreeAtReturnPass come from the runtime's kiln_buffer_alloc and kiln_buffer_free
// (kiln/runtime/kernel_buffers.hpp), which keep them from call to call on each thread, rather than from malloc and
// free, which gave large ones back to the system at every call.
struct KernelBuffersPass : PassWrapper<KernelBuffersPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(KernelBuffersPass)
  StringRef getArgument() const final { return "kiln-kernel-buffers"; }
  void runOnOperation() override {
    ModuleOp module = getOperation();
    for (auto [from, to] : {std::pair{"malloc", "kiln_buffer_alloc"}, std::pair{"free", "kiln_buffer_free"}}) {
      auto fn = module.lookupSymbol<LLVM::LLVMFuncOp>(from);
      if (!fn) continue;
      if (failed(SymbolTable::replaceAllSymbolUses(fn, StringAttr::get(&getContext(), to), module)))
        return signalPassFailure();
      fn.setSymName(to);
    }
  }
};

void initialise() {
  static std::once_flag once;
  std::call_once(once, [] {
    registerAllPasses();
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

// Collects every diagnostic MLIR emits while a stage runs.
class Diagnostics {
 public:
  explicit Diagnostics(MLIRContext& ctx)
      : handler_(&ctx, [this](Diagnostic& d) {
          text_ += (text_.empty() ? "" : "; ") + d.str();
          return success();
        }) {}
  [[noreturn]] void fail(std::string_view stage, std::string_view what) const {
    throw Error(fmt::format("kiln::mlir: the {} stage failed: {}{}{}", stage, what, text_.empty() ? "" : ": ", text_));
  }

 private:
  std::string text_;
  ScopedDiagnosticHandler handler_;
};

std::string print(Operation* op) {
  std::string s;
  llvm::raw_string_ostream os(s);
  op->print(os);
  return s;
}

// The passes of one stage, in order: MLIR's own by their mlir-opt names (textual pipelines), and Kiln's.
class StagePasses {
 public:
  StagePasses(MLIRContext& ctx, const Diagnostics& diags, std::string_view stage, bool timing)
      : pm_(&ctx), diags_(diags), stage_(stage) {
    if (timing) pm_.enableTiming();  // the report goes to stderr when pm_ is destroyed
  }
  StagePasses& then(std::string_view pipeline) {
    std::string errors;
    llvm::raw_string_ostream os(errors);
    if (failed(parsePassPipeline(pipeline, pm_, os))) diags_.fail(stage_, "the pass pipeline does not parse: " + errors);
    return *this;
  }
  StagePasses& then(std::unique_ptr<Pass> pass) {
    pm_.addPass(std::move(pass));
    return *this;
  }
  void run(ModuleOp module) {
    if (failed(pm_.run(module))) diags_.fail(stage_, "a pass failed");
  }

 private:
  PassManager pm_;
  const Diagnostics& diags_;
  std::string_view stage_;
};

// What the builder relies on, checked before it runs: an ir::Network from ir::describe always passes; one put
// together by hand may not, and then the error names the layer or step instead of crashing in the builder.
[[noreturn]] void failLayer(const ir::Layer& l, const std::string& what) {
  throw Error(fmt::format("kiln::mlir: layer {} ({}): {}", l.path.view(), l.name.view(), what));
}

// Each layer's parameters, lowering and dims, on their own.
void validateLayer(const ir::Network& net, const ir::Layer& l) {
  const int buffers = static_cast<int>(net.buffers.size());
  for (int r = 0; r < role_count; ++r) {
    const int index = l.params[static_cast<std::size_t>(r)];
    if (index < -1 || index >= buffers)
      failLayer(l, fmt::format("its {} is buffer {}, but the network has {} buffers", role_name(static_cast<Role>(r)),
                               index, buffers));
    if (index >= 0 && net.buffers[static_cast<std::size_t>(index)].spec.role != static_cast<Role>(r))
      failLayer(l, fmt::format("its {} is buffer {} ({}), which is a {}", role_name(static_cast<Role>(r)), index,
                               net.buffers[static_cast<std::size_t>(index)].name.view(),
                               role_name(net.buffers[static_cast<std::size_t>(index)].spec.role)));
  }
  backend::checkLowering(l);
  if (l.in.rank < 1 || l.out.rank < 1) failLayer(l, "has no per-sample dims");
}

// A network without steps: its layers one after the other, Bilinear first.
void validateChain(const ir::Network& net) {
  for (std::size_t i = 0; i < net.layers.size(); ++i) {
    const ir::Layer& l = net.layers[i];
    if (l.kind == "bilinear" && (i != 0 || net.input_count != 2))
      failLayer(l, "takes the network's two inputs, so it must be the first layer of a network with two inputs");
    if (i > 0 && !(l.in == net.layers[i - 1].out))
      failLayer(l, fmt::format("expects {} but the layer before gives {}", ir::to_string(l.in),
                               ir::to_string(net.layers[i - 1].out)));
  }
  const Dims out = net.layers.empty() ? net.input : net.layers.back().out;
  if (!(out.numel() == net.output.numel()))
    throw Error(fmt::format("kiln::mlir: the network's output is {} but its last layer gives {}", ir::to_string(net.output),
                            ir::to_string(out)));
}

// The steps of a graph network, in order: each reads values defined before it, in dims that fit.
class StepChecker {
 public:
  explicit StepChecker(const ir::Network& net) : net_(net), runs_(net.layers.size(), 0) {}

  void check() {
    for (std::size_t k = 0; k < net_.steps.size(); ++k) checkStep(k, net_.steps[k]);
    for (std::size_t i = 0; i < runs_.size(); ++i)
      if (runs_[i] != 1)
        failLayer(net_.layers[i], fmt::format("is run by {} steps; each layer runs in exactly one", runs_[i]));
    const Dims& out = net_.steps.back().out;
    if (!(out == net_.output))
      throw Error(fmt::format("kiln::mlir: the network's output is {} but its last step gives {}",
                              ir::to_string(net_.output), ir::to_string(out)));
  }

 private:
  [[noreturn]] void fail(std::size_t k, const Step& s, const std::string& what) const {
    const bool layer = s.op == Step::Op::layer && s.leaf < net_.layers.size();
    const std::string_view path = layer ? net_.layers[s.leaf].path.view() : s.path.view();
    const std::string_view name = layer ? net_.layers[s.leaf].name.view() : s.name.view();
    if (name.empty()) throw Error(fmt::format("kiln::mlir: step {}: {}", k, what));
    throw Error(fmt::format("kiln::mlir: step {}, layer {} ({}): {}", k, path, name, what));
  }
  const Dims& dims(int value) const {
    if (value == 0) return net_.input;
    if (value == 1) return net_.input2;
    return net_.steps[static_cast<std::size_t>(value - first_step_value)].out;
  }
  // Where value `value`, read by step k, comes from.
  std::string source(int value, std::size_t k) const {
    if (value == 0) return "the network's input";
    if (value == 1) return "the network's second input";
    const auto j = static_cast<std::size_t>(value - first_step_value);
    const Step& s = net_.steps[j];
    if (s.op != Step::Op::layer) return fmt::format("layer {} ({})", s.path.view(), s.name.view());
    if (j + 1 == k) return "the layer before";
    const ir::Layer& l = net_.layers[s.leaf];
    return fmt::format("layer {} ({})", l.path.view(), l.name.view());
  }
  std::vector<Dims> inputDims(std::size_t k, const Step& s) const {
    if (s.input_count < 1 || s.input_count > nn::max_branches)
      fail(k, s, fmt::format("has {} inputs, not 1 to {}", s.input_count, nn::max_branches));
    std::vector<Dims> in;
    for (int j = 0; j < s.input_count; ++j) {
      const int v = s.inputs[static_cast<std::size_t>(j)];
      if (v < 0 || v >= value_of_step(k) || (v == 1 && net_.input_count != 2))
        fail(k, s, fmt::format("reads value {}, which is not defined before it", v));
      in.push_back(dims(v));
    }
    return in;
  }
  void checkStep(std::size_t k, const Step& s) {
    const std::vector<Dims> in = inputDims(k, s);
    if (s.out.rank < 1) fail(k, s, "has no per-sample dims");
    if (s.op == Step::Op::layer) checkLayer(k, s, in);
    else if (s.op == Step::Op::add) checkAdd(k, s, in);
    else if (s.op == Step::Op::concat) checkConcat(k, s, in);
    else fail(k, s, fmt::format("has an unknown op {}", static_cast<int>(s.op)));
  }
  void checkLayer(std::size_t k, const Step& s, const std::vector<Dims>& in) {
    if (s.leaf >= net_.layers.size())
      fail(k, s, fmt::format("runs layer {}, but the network has {} layers", s.leaf, net_.layers.size()));
    const ir::Layer& l = net_.layers[s.leaf];
    ++runs_[s.leaf];
    const bool bilinear = l.kind == "bilinear";
    if (bilinear && !(s.input_count == 2 && s.inputs[0] == 0 && s.inputs[1] == 1))
      fail(k, s, "takes the network's two inputs, so it must read values 0 and 1");
    if (!bilinear && s.input_count != 1) fail(k, s, fmt::format("reads {} values; a layer reads one", s.input_count));
    if (!(in[0] == l.in))
      fail(k, s, fmt::format("expects {} but {} gives {}", ir::to_string(l.in), source(s.inputs[0], k),
                             ir::to_string(in[0])));
    if (!(s.out == l.out))
      fail(k, s, fmt::format("gives {} but its layer gives {}", ir::to_string(s.out), ir::to_string(l.out)));
  }
  void checkAdd(std::size_t k, const Step& s, const std::vector<Dims>& in) {
    for (const Dims& d : in)
      if (!(d == in[0]))
        fail(k, s, fmt::format("adds {} to {}; added values need the same dims", ir::to_string(d),
                               ir::to_string(in[0])));
    if (!(s.out == in[0])) fail(k, s, fmt::format("gives {} but adds {}", ir::to_string(s.out), ir::to_string(in[0])));
  }
  void checkConcat(std::size_t k, const Step& s, const std::vector<Dims>& in) {
    if (s.dim < 0 || s.dim >= s.out.rank)
      fail(k, s, fmt::format("concatenates along per-sample dim {} of {}", s.dim, ir::to_string(s.out)));
    index_t along = 0;
    for (const Dims& d : in) {
      bool agree = d.rank == s.out.rank;
      for (int i = 0; agree && i < d.rank; ++i) agree = i == s.dim || d.sizes[i] == s.out.sizes[i];
      if (!agree)
        fail(k, s, fmt::format("concatenates {} into {} along dim {}: they must agree on every other dim",
                               ir::to_string(d), ir::to_string(s.out), s.dim));
      along += d.sizes[s.dim];
    }
    if (along != s.out.sizes[s.dim])
      fail(k, s, fmt::format("gives {} but its inputs add up to {} along dim {}", ir::to_string(s.out), along, s.dim));
  }

  const ir::Network& net_;
  std::vector<int> runs_;  // per layer: the steps that run it
};

void validate(const ir::Network& net) {
  if (net.input_count != 1 && net.input_count != 2)
    throw Error(fmt::format("kiln::mlir: a network takes 1 or 2 inputs, not {}", net.input_count));
  for (const ir::Layer& l : net.layers) validateLayer(net, l);
  if (net.steps.empty()) validateChain(net);
  else StepChecker(net).check();
}

std::int64_t l2Bytes(const Target& target) {
  if (target.l2_bytes > 0) return target.l2_bytes;
  return target.cpu.empty() && target.triple.empty() ? l2_cache_bytes() : default_l2_cache_bytes;
}

std::unique_ptr<llvm::TargetMachine> targetMachine(const Target& target);

// Whether the target has AVX-512's 32 vector registers, as LLVM describes its CPU and features (another
// architecture than x86 keeps the tiles it had).
bool hasWideRegisterFile(const Target& target) {
  const std::unique_ptr<llvm::TargetMachine> tm = targetMachine(target);
  return !tm->getTargetTriple().isX86() || tm->getMCSubtargetInfo()->checkFeatures("+avx512f");
}

// Stage by stage, stopping at `last`.
OwningOpRef<ModuleOp> lowerModule(MLIRContext& ctx, const Diagnostics& diags, const ir::Network& net,
                                  const std::string& name, Stage last, const Target& target,
                                  backend::Modes modes = backend::Modes::both, bool timing = false) {
  validate(net);
  OwningOpRef<ModuleOp> module = ModuleOp::create(UnknownLoc::get(&ctx));
  const backend::RegisterTiles tiles = backend::registerTiles(hasWideRegisterFile(target));
  backend::buildNetworkFunctions(*module, net, name, tiles, modes);
  if (failed(verify(*module))) diags.fail("mlir", "the network's functions do not verify");
  if (last == Stage::mlir) return module;

  StagePasses(ctx, diags, "linalg", timing)
      .then(std::make_unique<FuseElementwisePass>())
      // cse then canonicalize again: a Concat's slices, written in place, leave copies of a subview onto an
      // equal one, which are erased once cse has made them the same subview.
      .then("eliminate-empty-tensors,one-shot-bufferize,canonicalize,cse,canonicalize")
      .then(backend::createContractionToVectorPass(tiles, l2Bytes(target)))
      .then(std::make_unique<FreeAtReturnPass>())
      .then("canonicalize,cse")
      .run(*module);
  if (last == Stage::linalg) return module;

  StagePasses(ctx, diags, "llvm-dialect", timing)
      .then("func.func(convert-linalg-to-loops),expand-strided-metadata,lower-affine,convert-scf-to-cf")
      .then(std::make_unique<MathApproximationPass>())
      .then("convert-vector-to-llvm,convert-math-to-llvm,finalize-memref-to-llvm,convert-arith-to-llvm,"
            "convert-index-to-llvm,convert-func-to-llvm,convert-cf-to-llvm,reconcile-unrealized-casts")
      .then(std::make_unique<KernelBuffersPass>())
      .then(backend::createEntryPointsPass(net, name, l2Bytes(target)))
      .run(*module);
  return module;
}

std::unique_ptr<llvm::TargetMachine> targetMachine(const Target& target) {
  auto fail = [](const std::string& what) { throw Error("kiln::mlir: the llvm-ir stage failed: " + what); };
  auto builder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!builder) fail("cannot describe the host CPU: " + llvm::toString(builder.takeError()));
  if (!target.triple.empty()) *builder = llvm::orc::JITTargetMachineBuilder(llvm::Triple(target.triple));
  // Another CPU than this machine's brings its own features (plus any given).
  if (!target.cpu.empty() || !target.triple.empty()) {
    builder->setCPU(target.cpu);
    builder->getFeatures() = llvm::SubtargetFeatures();
    if (!target.features.empty()) builder->addFeatures(std::vector<std::string>{target.features});
  }
  builder->setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  builder->setRelocationModel(llvm::Reloc::PIC_);  // linkable into position-independent executables
  auto tm = builder->createTargetMachine();
  if (!tm) fail("no target machine: " + llvm::toString(tm.takeError()));
  return std::move(*tm);
}

}  // namespace

Stage stage_from_name(std::string_view name) {
  if (name == "mlir") return Stage::mlir;
  if (name == "linalg") return Stage::linalg;
  if (name == "llvm-dialect") return Stage::llvm_dialect;
  if (name == "llvm-ir") return Stage::llvm_ir;
  if (name == "obj") return Stage::obj;
  throw Error(fmt::format("unknown stage \"{}\": expected mlir, linalg, llvm-dialect, llvm-ir or obj", name));
}

Target host_target() {
  std::string features;
  for (const auto& f : llvm::sys::getHostCPUFeatures()) {
    if (!features.empty()) features += ',';  // appended piece by piece: see ir::to_string(Dims)
    features += f.getValue() ? '+' : '-';
    features += f.getKey().str();
  }
  return {llvm::sys::getDefaultTargetTriple(), llvm::sys::getHostCPUName().str(), features, l2_cache_bytes()};
}

namespace {

// One MLIRContext per compile (per mode, in lower_objects), with every dialect and translation registered.
// MLIR's own threading is off: a session runs on one thread.
struct Session {
  DialectRegistry registry;
  std::unique_ptr<MLIRContext> ctx;
  std::unique_ptr<Diagnostics> diags;
  Session() {
    initialise();
    registerAllDialects(registry);
    registerAllExtensions(registry);
    registerBuiltinDialectTranslation(registry);
    registerLLVMDialectTranslation(registry);
    ctx = std::make_unique<MLIRContext>(registry, MLIRContext::Threading::DISABLED);
    // Only the dialects the network's functions start in: passes load what they produce. (Loading every
    // dialect makes each canonicalization gather every dialect's patterns: a third of the compile time.)
    ctx->loadDialect<func::FuncDialect, linalg::LinalgDialect, tensor::TensorDialect, arith::ArithDialect,
                     math::MathDialect, bufferization::BufferizationDialect, memref::MemRefDialect>();
    diags = std::make_unique<Diagnostics>(*ctx);
  }
};

std::unique_ptr<llvm::Module> translate(ModuleOp module, llvm::LLVMContext& llvmCtx, const std::string& name,
                                        const Diagnostics& diags) {
  std::unique_ptr<llvm::Module> llvmModule = translateModuleToLLVMIR(module, llvmCtx, name);
  if (!llvmModule) diags.fail("llvm-ir", "the LLVM dialect does not translate to LLVM IR");
  return llvmModule;
}

// LLVM's O3 pipeline for the target, without loop unrolling: the kernels unroll what matters themselves
// (register tiles), and LLVM unrolling the short static loops around them multiplies the code, and the
// compile time, for nothing.
void optimize(llvm::Module& module, llvm::TargetMachine& tm, bool timing) {
  llvm::PipelineTuningOptions tuning;
  tuning.LoopUnrolling = false;
  llvm::PassInstrumentationCallbacks instrumentation;
  llvm::TimePassesHandler timer(timing);  // reports to stderr when destroyed
  timer.registerCallbacks(instrumentation);
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(&tm, tuning, std::nullopt, &instrumentation);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(module, mam);
}

// LLVM's O3 for the target (optimize above), then LLVM IR text (Stage::llvm_ir) or an object file. Returns the error, if any,
// instead of throwing: it may run on a thread of its own.
std::string optimizeAndEmit(llvm::Module& module, const Target& target, Stage stage, std::string& error,
                            bool timing = false) {
  std::unique_ptr<llvm::TargetMachine> tm;
  try {
    tm = targetMachine(target);
  } catch (const Error& e) {
    error = e.what();
    return {};
  }
  module.setDataLayout(tm->createDataLayout());
  module.setTargetTriple(tm->getTargetTriple().str());
  // LLVM's loop vectoriser takes vectors of 256 bits where the CPU has 512 (the clock of early AVX-512 CPUs
  // drops on them): the loops it vectorises (a generic that no pattern of contraction_to_vector.cpp rewrites,
  // as the exp of Softmax along an inner dim) ran 8 lanes at a time where the kernels' own vector code runs 16.
  for (llvm::Function& f : module)
    if (!f.isDeclaration()) f.addFnAttr("prefer-vector-width", "512");
  optimize(module, *tm, timing);
  std::string out;
  llvm::raw_string_ostream os(out);
  if (stage == Stage::llvm_ir) {
    module.print(os, nullptr);
    return out;
  }
  llvm::SmallVector<char, 0> object;
  llvm::raw_svector_ostream objectStream(object);
  llvm::legacy::PassManager codegen;
  if (tm->addPassesToEmitFile(codegen, objectStream, nullptr, llvm::CodeGenFileType::ObjectFile)) {
    error = "kiln::mlir: the obj stage failed: the target cannot emit object files";
    return {};
  }
  if (timing) llvm::TimePassesIsEnabled = true;  // the legacy pass manager's timers: process-wide
  codegen.run(module);
  if (timing) {
    llvm::reportAndResetTimings(&llvm::errs());
    llvm::TimePassesIsEnabled = false;
  }
  return std::string(object.begin(), object.end());
}

}  // namespace

std::string lower(const ir::Network& net, const std::string& name, Stage stage, const Target& target,
                  bool time_passes) {
  Session session;
  OwningOpRef<ModuleOp> module =
      lowerModule(*session.ctx, *session.diags, net, name, stage, target, backend::Modes::both, time_passes);
  if (stage == Stage::mlir || stage == Stage::linalg || stage == Stage::llvm_dialect) return print(module->getOperation());
  llvm::LLVMContext llvmCtx;
  std::unique_ptr<llvm::Module> llvmModule = translate(*module, llvmCtx, name, *session.diags);
  std::string error;
  std::string out = optimizeAndEmit(*llvmModule, target, stage, error, time_passes);
  if (!error.empty()) throw Error(error);
  return out;
}

std::int64_t packed_floats(const ir::Network& net) { return backend::packedOffset(net, net.layers.size()); }

std::vector<std::string> lower_objects(const ir::Network& net, const std::string& name, const Target& target) {
  // One module per mode (the packing goes with eval), each lowered and compiled on a thread of its own, in a
  // context of its own (an MLIRContext is not shared across threads here): the two modes' MLIR passes run side by
  // side as well as their LLVM work.
  std::array<std::string, 2> objects, errors;
  auto compile = [&](int mode) {
    try {
      Session session;
      const auto modes = mode == 0 ? backend::Modes::eval : backend::Modes::train;
      OwningOpRef<ModuleOp> module = lowerModule(*session.ctx, *session.diags, net, name, Stage::llvm_dialect, target, modes);
      llvm::LLVMContext llvmCtx;
      std::unique_ptr<llvm::Module> llvmModule = translate(*module, llvmCtx, name, *session.diags);
      objects[mode] = optimizeAndEmit(*llvmModule, target, Stage::obj, errors[mode]);
    } catch (const std::exception& e) {
      errors[mode] = e.what();
    }
  };
  std::thread other(compile, 1);
  compile(0);
  other.join();
  for (const std::string& error : errors)
    if (!error.empty()) throw Error(error);
  return {std::move(objects[0]), std::move(objects[1])};
}

std::string kernel_header(const ir::Network& net, const std::string& name) {
  std::string names, sizes;
  for (const SchemaEntry& b : net.buffers) {
    names += fmt::format("\"{}\", ", b.name.view());
    sizes += fmt::format("{}, ", b.spec.dtype() == DType::int64 ? 1 : b.spec.shape.numel());
  }
  std::string description;
  const std::string text = ir::to_string(net);
  for (std::string_view rest = text; !rest.empty();) {
    const std::size_t end = rest.find('\n');
    description += fmt::format("//   {}\n", rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
  }
  const bool two = net.input_count == 2;
  return fmt::format(
      R"(// Generated by Kiln (kiln_add_kernel): the ahead-of-time kernel "{0}". Link {0}.o; it needs no LLVM or MLIR.
// The network, as Kiln describes it:
{1}#pragma once

#include <array>
#include <cstdint>
#include <vector>

// The entry points: buffers = the state_dict's tensors in the order of {0}_kernel::buffer_names (float32, but
// num_batches_tracked int64), then the kernel's packed weights ({0}_kernel::packed_floats floats, written by
// {0}_pack from the tensors before it), then the input{2}, then the output [batch, {0}_kernel::output_features].
// _train draws dropout masks from (seed, step) and updates BatchNorm1d's running statistics in place.
extern "C" void {0}_eval(void* const* buffers, std::int64_t batch, std::uint64_t seed, std::uint64_t step);
extern "C" void {0}_train(void* const* buffers, std::int64_t batch, std::uint64_t seed, std::uint64_t step);
extern "C" void {0}_pack(void* const* buffers);

namespace {0}_kernel {{
inline constexpr int buffer_count = {3};
inline constexpr const char* buffer_names[] = {{{4}}};
inline constexpr std::int64_t buffer_sizes[] = {{{5}}};
inline constexpr std::int64_t packed_floats = {13};
inline constexpr std::int64_t input_features = {6};
inline constexpr std::int64_t input2_features = {7};
inline constexpr std::int64_t output_features = {8};

// The parameters and buffers in state_dict order (pointers to the caller's tensors), with the packed weights
// the kernel reads beside them. Call repack() after changing the parameters' values.
class Weights {{
 public:
  using Buffers = std::array<void*, buffer_count + 1 + {10}>;  // ... the packed weights, the input{2}, the output
  explicit Weights(void* const* parameters) : packed_(static_cast<std::size_t>(packed_floats) + 15) {{
    for (int i = 0; i < buffer_count; ++i) parameters_[static_cast<std::size_t>(i)] = parameters[i];
    repack();
  }}
  void repack() {{ {0}_pack(buffers().data()); }}
  // The kernel's buffer array up to the packed weights (64-byte aligned in packed_, as the kernel's vector loads
  // read them best).
  Buffers buffers() const {{
    Buffers b = parameters_;
    const auto at = reinterpret_cast<std::uintptr_t>(packed_.data());
    b[buffer_count] = const_cast<float*>(packed_.data()) + (64 - at % 64) % 64 / sizeof(float);
    return b;
  }}

 private:
  Buffers parameters_{{}};
  std::vector<float> packed_;
}};
}}  // namespace {0}_kernel

// Eval mode, as a plain function: the weights, the input{2} and the output, [batch, features] each.
inline void {0}(const {0}_kernel::Weights& weights, const float* input,{9} float* output, std::int64_t batch) {{
  {0}_kernel::Weights::Buffers buffers = weights.buffers();
  buffers[{0}_kernel::buffer_count + 1] = const_cast<float*>(input);
{11}  buffers[{0}_kernel::buffer_count + {12}] = output;
  {0}_eval(buffers.data(), batch, 0, 0);
}}
)",
      name, description, two ? "s (two for Bilinear)" : "", net.buffers.size(), names.empty() ? "\"\"" : names,
      sizes.empty() ? "0" : sizes, net.input.numel(), two ? net.input2.numel() : 0, net.output.numel(),
      two ? " const float* input2," : "", two ? 3 : 2,
      two ? fmt::format("  buffers[{}_kernel::buffer_count + 2] = const_cast<float*>(input2);\n", name) : "",
      two ? 3 : 2, packed_floats(net));
}

}  // namespace kiln::mlir

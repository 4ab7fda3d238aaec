// kiln::Model: a network's parameters and buffers, laid out from its schema, and the fused kernel that runs it.
//
//   kiln::Model model{net, /*seed=*/42};   // PyTorch's default init, drawn from the seed
//   model.load_safetensors("weights.safetensors");
//   model.eval();
//   kiln::Tensor y = model(x);            // x: [N, per-sample dims...]
//
// Like torch.nn.Module, a new model is in train mode. state_dict() returns copies under PyTorch's names; the
// model changes only through load_state_dict / load_safetensors (which repack the weights for the kernel).
//
// Threads (sharing.hpp): eval-mode calls (model(x), forward) may run on any number of threads at once, each with
// a workspace of its own. What changes the model (a train-mode call, a load, train()/eval(), set_step,
// parameters_changed, a backward) runs alone: while calls run it is refused with a kiln::Error, and calls are
// refused while it runs.
#pragma once

#include <kiln/dsl/schema.hpp>
#include <kiln/dsl/losses.hpp>
#include <kiln/et/fused.hpp>
#include <kiln/et/train.hpp>
#include <kiln/runtime/error.hpp>
#include <kiln/runtime/parameter.hpp>
#include <kiln/runtime/philox.hpp>
#include <kiln/runtime/tensor.hpp>
#include <kiln/runtime/tensor_file.hpp>
#include <kiln/sharing.hpp>

#include <fmt/format.h>

#include <array>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace kiln {

namespace detail {
// "[N, 1, 28, 28]": per-sample dims with the batch written N.
inline std::string batched_text(const Dims& d) { return std::string{d.text().view()}; }

// Shape of a schema entry as a runtime Shape.
inline Shape shape_of(const Dims& d) { return Shape(d.sizes, d.sizes + d.rank); }

// PyTorch's default distributions; uniform draws come from Philox keyed by the seed, counter
// (element / 4, entry index, 0xFFFFFFFF), a stream apart from dropout's.
inline void initialise(Tensor& t, const ParamSpec& spec, std::uint32_t index, std::uint64_t seed) {
  if (spec.dtype() == DType::int64) return;  // num_batches_tracked starts at 0
  float* d = t.data();
  const index_t n = t.numel();
  switch (spec.init) {
    case Init::zeros: break;
    case Init::ones: t.fill(1.0f); break;
    case Init::uniform: {
      const auto key = Philox4x32::key_of(seed);
      for (index_t i = 0; i < n; i += 4) {
        const auto b = static_cast<std::uint64_t>(i / 4);
        const auto words = Philox4x32::generate(
            {static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(b >> 32), index, 0xFFFFFFFFu}, key);
        for (index_t k = 0; k < 4 && i + k < n; ++k)
          d[i + k] = -spec.bound + 2.0f * spec.bound * Philox4x32::to_unit_float(words[k]);
      }
      break;
    }
  }
}

// A network's parameters and buffers in schema order, initialised: the part of a Model's construction that does
// not depend on the network's type (compiled once, not once per network).
inline std::vector<Parameter> initial_state(std::span<const SchemaEntry> schema, std::uint64_t seed) {
  std::vector<Parameter> state;
  state.reserve(schema.size());
  std::uint32_t index = 0;
  for (const SchemaEntry& s : schema) {
    const Shape shape = shape_of(s.spec.shape);
    Parameter p{s, Tensor(shape, s.spec.dtype()), s.spec.buffer() ? Tensor{} : Tensor(shape)};
    initialise(p.value, s.spec, index++, seed);
    state.push_back(std::move(p));
  }
  return state;
}

inline std::vector<Parameter> clone_state(const std::vector<Parameter>& state) {
  std::vector<Parameter> copy;
  copy.reserve(state.size());
  for (const Parameter& p : state)
    copy.push_back({p.entry, p.value.clone(), p.grad.defined() ? p.grad.clone() : Tensor{}});
  return copy;
}

}  // namespace detail

template <Network Net>
class Model {
  using Traits = network_traits<Net>;
  static constexpr std::size_t L = Traits::leaf_count;

 public:
  explicit Model(const Net& net, std::uint64_t seed = 0) : net_(net), seed_(seed) {
    const auto entries = schema(net_);
    state_ = detail::initial_state({entries.begin(), entries.end()}, seed_);
    bind();
  }
  Model(const Model& other)  // NOLINT
      : net_(other.net_), seed_(other.seed_), step_(other.step_), training_(other.training_),
        state_(detail::clone_state(other.state_)) {
    bind();
  }
  Model& operator=(const Model&) = delete;

  const Net& network() const { return net_; }
  std::uint64_t seed() const { return seed_; }

  // torch.nn.Module.train() / eval(): switch Dropout and BatchNorm1d.
  void train(bool on = true) {
    const detail::Users::Hold alone(users_, true, on ? "train()" : "eval()");
    training_ = on;
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Dropout draws from Philox keyed by the seed, at counter (element, dropout ordinal, step); every forward
  // in train mode advances the step.
  std::uint64_t step() const { return step_; }
  void set_step(std::uint64_t step) {
    const detail::Users::Hold alone(users_, true, "set_step");
    step_ = step;
  }

  // const: a model may be shared between threads (see above). In train mode a call still advances the step
  // and updates BatchNorm1d's running statistics, as in PyTorch, and runs alone.
  Tensor operator()(const Tensor& x) const {
    static_assert(Traits::input_count == 1, "this network takes two inputs: call model(x1, x2)");
    Tensor y(output_shape(x));
    run(x, nullptr, y, Path::fused);
    return y;
  }
  Tensor operator()(const Tensor& x1, const Tensor& x2) const {
    static_assert(Traits::input_count == 2, "this network takes one input: call model(x)");
    Tensor y(output_shape(x1));
    run(x1, &x2, y, Path::fused);
    return y;
  }
  // Into a preallocated output [N, output dims...].
  void forward(const Tensor& x, Tensor& y) const {
    static_assert(Traits::input_count == 1, "this network takes two inputs: call forward(x1, x2, y)");
    run(x, nullptr, y, Path::fused);
  }
  void forward(const Tensor& x1, const Tensor& x2, Tensor& y) const {
    static_assert(Traits::input_count == 2, "this network takes one input: call forward(x, y)");
    run(x1, &x2, y, Path::fused);
  }

  // The unfused evaluators (one step at a time over the whole batch), for tests and benchmarks:
  // forward_reference with plain loops for Linear, forward_unfused with the fused kernel's per-layer code.
  Tensor forward_reference(const Tensor& x) const {
    static_assert(Traits::input_count == 1, "this network takes two inputs: call forward_reference(x1, x2)");
    Tensor y(output_shape(x));
    run(x, nullptr, y, Path::reference);
    return y;
  }
  Tensor forward_reference(const Tensor& x1, const Tensor& x2) const {
    static_assert(Traits::input_count == 2, "this network takes one input: call forward_reference(x)");
    Tensor y(output_shape(x1));
    run(x1, &x2, y, Path::reference);
    return y;
  }
  void forward_unfused(const Tensor& x, Tensor& y) const {
    static_assert(Traits::input_count == 1, "this network takes two inputs: call forward_unfused(x1, x2, y)");
    run(x, nullptr, y, Path::unfused);
  }
  void forward_unfused(const Tensor& x1, const Tensor& x2, Tensor& y) const {
    static_assert(Traits::input_count == 2, "this network takes one input: call forward_unfused(x, y)");
    run(x1, &x2, y, Path::unfused);
  }

  // Parameters and buffers under PyTorch's state_dict names, as copies.
  TensorMap state_dict() const {
    TensorMap m;
    for (const Parameter& p : state_) m.emplace(p.name(), p.value.clone());
    return m;
  }
  // Parameters only (no buffers), in the order of the network, as copies.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const {
    std::vector<std::pair<std::string, Tensor>> out;
    for (const Parameter& p : state_)
      if (!p.buffer()) out.emplace_back(p.name(), p.value.clone());
    return out;
  }
  // Every parameter and buffer, in state_dict order: the model's own storage (the compiled kernels' buffers).
  const std::vector<Parameter>& state() const { return state_; }

  // Copies the tensors into the model. strict (as in PyTorch): every key of the model must be present and no
  // other key. Everything is checked before anything is copied, so a failed load leaves the model as it was.
  // `source` names where the tensors came from, in errors.
  void load_state_dict(const TensorMap& tensors, bool strict = true, const std::string& source = "state_dict") {
    std::vector<std::string> problems;
    for (const Parameter& p : state_) {
      auto it = tensors.find(std::string{p.name()});
      if (it == tensors.end()) {
        if (strict)
          problems.push_back(fmt::format("missing key \"{}\" (expected {} {})", p.name(), dtype_name(p.value.dtype()),
                                         shape_text(p.value.shape())));
        continue;
      }
      const Tensor& t = it->second;
      if (t.shape() != p.value.shape() || t.dtype() != p.value.dtype())
        problems.push_back(fmt::format("key \"{}\": expected {} {}, got {} {}", p.name(), dtype_name(p.value.dtype()),
                                       shape_text(p.value.shape()), dtype_name(t.dtype()), shape_text(t.shape())));
    }
    if (strict)
      for (const auto& [name, t] : tensors)
        if (!find(name)) problems.push_back(fmt::format("unexpected key \"{}\"", name));
    if (!problems.empty())
      throw Error(fmt::format("{}: cannot load into {}: {}", source, describe(), fmt::join(problems, "; ")));
    const detail::Users::Hold alone(users_, true, "load_state_dict");
    for (Parameter& p : state_)
      if (auto it = tensors.find(std::string{p.name()}); it != tensors.end()) p.value.copy_from(it->second);
    pack();
  }
  void load_safetensors(const std::filesystem::path& path, bool strict = true) {
    load_state_dict(load_tensors(path), strict, path.string());
  }
  void save_safetensors(const std::filesystem::path& path, const Metadata& metadata = {}) const {
    save_tensors(path, state_dict(), metadata);
  }

  // ---- Training ------------------------------------------------------------------------------------------
  // Gradients accumulate, as in PyTorch, until zero_grad().
  void zero_grad() {
    for (Parameter& p : state_)
      if (p.grad.defined()) p.grad.fill(0.0f);
  }
  // The accumulated gradients under the parameters' names, as copies.
  TensorMap gradients() const {
    TensorMap m;
    for (const Parameter& p : state_)
      if (p.grad.defined()) m.emplace(p.name(), p.grad.clone());
    return m;
  }

  // Forward, CrossEntropyLoss on the logits against int64 class targets [N], and backward, fused per tile.
  // Returns the loss; gradients are added to the parameters' gradients. `logits`, when given, receives the
  // output [N, classes]; `input_grad`, dL/d(input).
  double forward_backward(const Tensor& x, const Tensor& targets, const nn::CrossEntropyLoss& loss,
                          Tensor* logits = nullptr, Tensor* input_grad = nullptr) {
    static_assert(Traits::input_count == 1, "this network takes two inputs: forward_backward takes one (call "
                                            "model(x1, x2), then backward(x1, x2, grad_output))");
    static_assert(Traits::output_dims.rank == 1, "CrossEntropyLoss takes logits [N, C]: the network's output is not");
    const index_t n = x.dim() > 0 ? x.size(0) : 0, classes = Traits::output_dims.sizes[0];
    if (targets.dtype() != DType::int64 || targets.shape() != Shape{n})
      throw Error(fmt::format("CrossEntropyLoss: targets must be I64 [{}] (one class per sample), got {} {}", n,
                              dtype_name(targets.dtype()), shape_text(targets.shape())));
    for (index_t i = 0; i < n; ++i)
      if (targets.data_i64()[i] < 0 || targets.data_i64()[i] >= classes)
        throw Error(fmt::format("CrossEntropyLoss: target {} of sample {} is not a class in [0, {})",
                                targets.data_i64()[i], i, classes));
    et::LossTerm term{et::LossTerm::Kind::cross_entropy, targets.data_i64(), nullptr, loss.label_smoothing,
                      loss.reduction == nn::Reduction::mean ? 1.0 / static_cast<double>(mean_over(n)) : 1.0};
    return train(x, nullptr, term, logits, input_grad, nullptr);
  }
  // Forward, MSELoss against float targets shaped like the output, and backward.
  double forward_backward(const Tensor& x, const Tensor& targets, const nn::MSELoss& loss, Tensor* output = nullptr,
                          Tensor* input_grad = nullptr) {
    static_assert(Traits::input_count == 1, "this network takes two inputs: forward_backward takes one (call "
                                            "model(x1, x2), then backward(x1, x2, grad_output))");
    const Shape out_shape = output_shape(x);
    if (targets.dtype() != DType::float32 || targets.shape() != out_shape)
      throw Error(fmt::format("MSELoss: targets must be F32 {} (the output's shape), got {} {}", shape_text(out_shape),
                              dtype_name(targets.dtype()), shape_text(targets.shape())));
    const double values = static_cast<double>(mean_over(x.size(0))) * static_cast<double>(Traits::output_dims.numel());
    et::LossTerm term{et::LossTerm::Kind::mse, nullptr, targets.data(), 0.0f,
                      loss.reduction == nn::Reduction::mean ? 1.0 / values : 1.0};
    return train(x, nullptr, term, output, input_grad, nullptr);
  }
  // Backward of sum(output * grad_output) (grad_output is dL/d(output), as in y.backward(grad_output)):
  // adds the parameters' gradients, and writes dL/d(input) into input_grad when given.
  void backward(const Tensor& x, const Tensor& grad_output, Tensor* input_grad = nullptr) {
    static_assert(Traits::input_count == 1, "this network takes two inputs: call backward(x1, x2, ...)");
    upstream_backward(x, nullptr, grad_output, input_grad, nullptr);
  }
  void backward(const Tensor& x1, const Tensor& x2, const Tensor& grad_output, Tensor* input1_grad = nullptr,
                Tensor* input2_grad = nullptr) {
    static_assert(Traits::input_count == 2, "this network takes one input: call backward(x, ...)");
    upstream_backward(x1, &x2, grad_output, input1_grad, input2_grad);
  }

  // Data-parallel training (kiln::dist::DataParallel sets it around its calls): this process's batch is rows
  // [first_sample, first_sample + N) of a global batch, so Dropout draws the global batch's mask for them and a mean
  // loss divides by global_batch (the loss and gradients are this shard's part of the global batch's); with
  // batch_stats_sum set, train-mode BatchNorm1d normalises with the global batch's statistics (SyncBatchNorm), and
  // every train-mode call is a collective: each process of the job must make it. Default: a batch of its own.
  void set_shard(const et::Shard& shard) {
    const detail::Users::Hold alone(users_, true, "set_shard");
    shard_ = shard;
  }
  const et::Shard& shard() const { return shard_; }

  // What an optimizer updates: the parameters (not the buffers), in order, as views into the model.
  std::vector<Parameter> parameters() {
    std::vector<Parameter> out;
    for (const Parameter& p : state_)
      if (!p.buffer()) out.push_back(p);
    return out;
  }
  // Call after writing parameters through parameters() (optimizers do): repacks the kernel's weights.
  void parameters_changed() {
    const detail::Users::Hold alone(users_, true, "parameters_changed");
    pack();
  }

  // Holds the model alone while an optimizer writes its parameters (kiln::optim), and repacks them at the end.
  class ParameterUpdate {
   public:
    explicit ParameterUpdate(Model& model) : model_(model), hold_(model.users_, true, "an optimizer step") {}
    ~ParameterUpdate() { model_.pack(); }
    ParameterUpdate(const ParameterUpdate&) = delete;
    ParameterUpdate& operator=(const ParameterUpdate&) = delete;

   private:
    Model& model_;
    detail::Users::Hold hold_;
  };

  // Holds the model for one call of another backend (kiln::jit) that runs its parameters, as model(x) does:
  // shared in eval mode, alone in train mode (then advance_step() after the call).
  class Call {
   public:
    explicit Call(const Model& model)
        : model_(model), training_(model.training_), hold_(model.users_, training_, "a kernel call") {}
    bool training() const { return training_; }
    bool alone() const { return hold_.alone(); }
    void advance_step() const {
      if (training_) ++model_.step_;
    }

   private:
    const Model& model_;
    bool training_;
    detail::Users::Hold hold_;
  };

  // Counts the changes of the parameters' values (each repack of the weights): another backend that keeps a
  // packed copy of its own (kiln::jit) packs again when it has changed.
  std::uint64_t weights_version() const { return weights_version_; }

  // What a forward checks before it runs, for other backends (kiln::jit) that run this model's parameters:
  // that a batch of this size has more than one value per channel for every BatchNorm1d using batch statistics.
  void check_batch(index_t batch) const { et::check_batch_stats<Net>(leaf_values(net_), batch, training_); }
  // The output shape for input(s) x (and x2), after checking them as a forward does.
  Shape checked_output_shape(const Tensor& x, const Tensor* x2 = nullptr) const {
    const Shape s = output_shape(x);
    if (x2) check_second_input(x, *x2);
    return s;
  }
  // Checks input(s) x (and x2) and the output y as forward(x, y) does, without building a Shape: a call
  // allocates nothing (tiny 16-32-32-4 at batch 1 in the JIT kernel: a fifth of the call went to malloc and free).
  void check_forward(const Tensor& x, const Tensor* x2, const Tensor& y) const {
    check_input(x, Traits::input_dims, Traits::input_count == 2 ? "first" : "the");
    if (x2) check_second_input(x, *x2);
    if (!is_output(y, x.size(0)))
      throw Error(fmt::format("output: expected F32 {} but got {} {}", shape_text(output_shape(x)),
                              dtype_name(y.dtype()), shape_text(y.shape())));
  }

 private:
  std::string describe() const {
    return fmt::format("a network with input {} and output {}", detail::batched_text(Traits::input_dims),
                       detail::batched_text(Traits::output_dims));
  }
  // The sample count a mean loss divides by: the batch's, or the global batch's when this is a shard of one.
  index_t mean_over(index_t batch) const { return shard_.global_batch > 0 ? shard_.global_batch : batch; }
  void upstream_backward(const Tensor& x, const Tensor* x2, const Tensor& grad_output, Tensor* dx, Tensor* dx2) {
    const Shape out_shape = output_shape(x);
    if (grad_output.dtype() != DType::float32 || grad_output.shape() != out_shape)
      throw Error(fmt::format("backward: grad_output must be F32 {} (the output's shape), got {} {}",
                              shape_text(out_shape), dtype_name(grad_output.dtype()), shape_text(grad_output.shape())));
    et::LossTerm term{et::LossTerm::Kind::upstream, nullptr, grad_output.data(), 0.0f, 1.0};
    train(x, x2, term, nullptr, dx, dx2);
  }

  double train(const Tensor& x, const Tensor* x2, const et::LossTerm& loss, Tensor* y, Tensor* dx, Tensor* dx2) {
    const detail::Users::Hold alone(users_, true, "a backward");
    const Shape out_shape = output_shape(x);
    if (x2) check_second_input(x, *x2);
    auto prepare = [&](Tensor* t, const Shape& shape) -> float* {
      if (!t) return nullptr;
      if (t->shape() != shape || t->dtype() != DType::float32) *t = Tensor(shape);
      return t->data();
    };
    float* y_data = prepare(y, out_shape);
    float* dx_data = prepare(dx, x.shape());
    float* dx2_data = x2 ? prepare(dx2, x2->shape()) : nullptr;
    const et::TrainCall<Net> call{{net_, params_, x.data(), x2 ? x2->data() : nullptr, y_data, x.size(0), training_,
                                   seed_, static_cast<std::uint32_t>(step_), shard_},
                                  loss, state_, dx_data, dx2_data};
    pack_transposed(dx_data || dx2_data);
    const double value = et::train_fused(call, workspace_, train_workspace_);
    if (training_) ++step_;
    return value;
  }
  void check_second_input(const Tensor& x, const Tensor& x2) const {
    check_input(x2, Traits::input2_dims, "second");
    if (x2.size(0) != x.size(0))
      throw Error(fmt::format("second input: batch of {} but the first input has a batch of {}", x2.size(0), x.size(0)));
  }

  const Parameter* find(const std::string& name) const {
    for (const Parameter& p : state_)
      if (p.name() == name) return &p;
    return nullptr;
  }

  // Points each layer's LayerParams at its parameters, by role, and packs the weights.
  void bind() {
    params_ = {};
    for (Parameter& p : state_) et::bind_param(params_[p.entry.leaf], p.role(), p.value.bytes());
    for_each_leaf(net_, [&](auto i, const auto&) {
      using Layer = typename Traits::template leaf<i>;
      if constexpr (et::PackingEvaluator<Layer>) {
        packed_[i] = Tensor({et::Eval<Layer>::packed_size});
        params_[i].packed_weight = packed_[i].data();
      }
      if constexpr (et::TransposePackingEvaluator<Layer>) {
        packed_t_[i] = Tensor({et::Eval<Layer>::packed_t_size});
        params_[i].packed_weight_t = packed_t_[i].data();
      }
    });
    pack();
  }
  // The forward's packed weights at once; the backward's transposed ones (packed_t) when a backward needs them.
  void pack() {
    for_each_leaf(net_, [&](auto i, const auto&) {
      using Layer = typename Traits::template leaf<i>;
      if constexpr (et::PackingEvaluator<Layer>) et::Eval<Layer>::pack(params_[i].weight, packed_[i].data());
    });
    packed_t_fresh_.fill(false);
    ++weights_version_;
  }
  // Packs W^T for the layers whose input gradient a backward will compute (et::input_grad_needed), if stale.
  void pack_transposed(bool input_grad) {
    const auto needed = et::input_grad_needed(net_, input_grad);
    for_each_leaf(net_, [&](auto i, const auto&) {
      using Layer = typename Traits::template leaf<i>;
      if constexpr (et::TransposePackingEvaluator<Layer>)
        if (needed[i] && !packed_t_fresh_[i]) {
          et::Eval<Layer>::pack_t(params_[i].weight, packed_t_[i].data());
          packed_t_fresh_[i] = true;
        }
    });
  }

  // Checks an input against the network's per-sample shape; names the first layer in the error.
  void check_input(const Tensor& x, const Dims& expected, const char* which) const {
    bool ok = x.defined() && x.dtype() == DType::float32 && x.dim() == expected.rank + 1;
    for (int d = 0; ok && d < expected.rank; ++d) ok = x.size(d + 1) == expected.sizes[d];
    if (!ok) {
      std::string first = "the output";
      if constexpr (L > 0)
        first = fmt::format("layer {} ({})", Traits::analysis.path[0].view(),
                            Traits::template leaf<0>::name().view());
      throw Error(fmt::format("{} input: {} expects {} {} but got {} {}", which, first, "F32",
                              detail::batched_text(expected), dtype_name(x.dtype()), shape_text(x.shape())));
    }
  }
  Shape output_shape(const Tensor& x) const {
    check_input(x, Traits::input_dims, Traits::input_count == 2 ? "first" : "the");
    Shape s{x.size(0)};
    for (int d = 0; d < Traits::output_dims.rank; ++d) s.push_back(Traits::output_dims.sizes[d]);
    return s;
  }

  enum class Path { fused, unfused, reference };
  // Whether y is the output for a batch of `batch` (checked without building a Shape: a call allocates nothing).
  static bool is_output(const Tensor& y, index_t batch) {
    bool ok = y.defined() && y.dtype() == DType::float32 && y.dim() == Traits::output_dims.rank + 1 && y.size(0) == batch;
    for (int d = 0; ok && d < Traits::output_dims.rank; ++d) ok = y.size(d + 1) == Traits::output_dims.sizes[d];
    return ok;
  }
  void run(const Tensor& x, const Tensor* x2, Tensor& y, Path path) const {
    check_forward(x, x2, y);
    const Call use{*this};
    const et::ForwardCall<Net> call{net_,      params_,   x.data(), x2 ? x2->data() : nullptr, y.data(), x.size(0),
                                    training_, seed_,     static_cast<std::uint32_t>(step_), shard_};
    switch (path) {
      case Path::fused: {
        // A call that runs alone takes the model's own workspace, two atomic operations fewer than the pool's
        // (a quarter of a call of tiny 16-32-32-4 at batch 1 went to four of them).
        if (use.alone()) {
          et::forward_fused(call, workspace_);
          break;
        }
        std::unique_ptr<et::Workspace<Net>> workspace = workspaces_.take();
        et::forward_fused(call, *workspace);
        workspaces_.give_back(std::move(workspace));
        break;
      }
      case Path::unfused: et::forward_unfused(call, et::Unfused::same_kernels); break;
      case Path::reference: et::forward_unfused(call, et::Unfused::plain_loops); break;
    }
    use.advance_step();
  }

  Net net_;
  std::uint64_t seed_ = 0;
  mutable std::uint64_t step_ = 0;  // a train-mode call advances it
  bool training_ = true;
  et::Shard shard_{};
  std::vector<Parameter> state_;
  std::array<et::LayerParams, L> params_{};
  std::array<Tensor, L> packed_{}, packed_t_{};
  std::array<bool, L> packed_t_fresh_{};
  std::uint64_t weights_version_ = 0;
  detail::Users users_;
  detail::WorkspacePool<et::Workspace<Net>> workspaces_;
  mutable et::Workspace<Net> workspace_;  // the calls' that run alone: forward_backward's, backward's, a lone forward's
  et::TrainWorkspace<Net> train_workspace_;
};

template <Network Net>
Model(const Net&, std::uint64_t) -> Model<Net>;
template <Network Net>
Model(const Net&) -> Model<Net>;

}  // namespace kiln

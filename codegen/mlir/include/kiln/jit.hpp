// kiln::jit: a model's network lowered to MLIR and compiled for this CPU at run time.
//
//   kiln::Model model{net, 42};
//   auto fast = kiln::jit::compile(model);  // one compile serves every batch size
//   kiln::Tensor y = fast(x);               // reads the model's parameters as they are now
//
// The kernel follows the model's mode (train/eval) and step, as model(x) does, and gives the same numbers. It
// keeps a packed copy of the weights, written again on the first call after the model's parameters change
// (Model::weights_version). Compiled kernels are cached in this process and on disk (kiln::mlir::JitOptions).
// Link kiln::mlir.
#pragma once

#include <kiln/ir/describe.hpp>
#include <kiln/mlir/kernel.hpp>
#include <kiln/model.hpp>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>

namespace kiln::jit {

using Options = mlir::JitOptions;

template <Network Net>
class Kernel {
 public:
  Kernel(Model<Net>& model, std::shared_ptr<const mlir::LoadedKernel> kernel)
      : model_(&model), kernel_(std::move(kernel)), packed_(std::make_shared<Packed>(kernel_->packed_floats)) {}

  Tensor operator()(const Tensor& x) const {
    static_assert(network_traits<Net>::input_count == 1, "this network takes two inputs: call kernel(x1, x2)");
    Tensor y(model_->checked_output_shape(x));
    run(x, nullptr, y);
    return y;
  }
  Tensor operator()(const Tensor& x1, const Tensor& x2) const {
    static_assert(network_traits<Net>::input_count == 2, "this network takes one input: call kernel(x)");
    Tensor y(model_->checked_output_shape(x1, &x2));
    run(x1, &x2, y);
    return y;
  }
  void forward(const Tensor& x, Tensor& y) const {
    static_assert(network_traits<Net>::input_count == 1, "this network takes two inputs: call forward(x1, x2, y)");
    run(x, nullptr, y);
  }
  void forward(const Tensor& x1, const Tensor& x2, Tensor& y) const {
    static_assert(network_traits<Net>::input_count == 2, "this network takes one input: call forward(x, y)");
    run(x1, &x2, y);
  }

  mlir::Origin origin() const { return kernel_->origin; }
  Model<Net>& model() const { return *model_; }

 private:
  // The kernel's buffers: the state_dict's tensors, the packed weights, the input(s), the output; on the stack,
  // so that calls from several threads share nothing but the model (held as model(x) holds it) and the packed
  // weights (written by one of them, under the mutex, when the model's weights have changed).
  static constexpr std::size_t max_buffers = network_traits<Net>::leaf_count * ParamList::capacity + 4;
  struct Packed {
    explicit Packed(index_t floats) : weights({floats}) {}
    Tensor weights;
    std::mutex mutex;
    std::atomic<std::uint64_t> version{~std::uint64_t{0}};  // the model's weights_version they were packed from
  };

  // Packs the model's weights unless they are packed from its current version (which cannot change while the
  // call holds the model). buffers: the state_dict's tensors, then the packed weights.
  void pack_if_stale(void* const* buffers) const {
    const std::uint64_t version = model_->weights_version();
    if (packed_->version.load(std::memory_order_acquire) == version) return;
    const std::lock_guard lock(packed_->mutex);
    if (packed_->version.load(std::memory_order_relaxed) == version) return;
    kernel_->pack(buffers);
    packed_->version.store(version, std::memory_order_release);
  }

  void run(const Tensor& x, const Tensor* x2, Tensor& y) const {
    model_->check_forward(x, x2, y);
    const typename Model<Net>::Call use{*model_};
    const index_t batch = x.size(0);
    model_->check_batch(batch);
    if (batch > 0) {
      std::array<void*, max_buffers> buffers{};
      std::size_t n = 0;
      for (const Parameter& p : model_->state()) buffers[n++] = const_cast<std::byte*>(p.value.bytes());
      buffers[n++] = packed_->weights.data();
      pack_if_stale(buffers.data());
      buffers[n++] = const_cast<float*>(x.data());
      if (x2) buffers[n++] = const_cast<float*>(x2->data());
      buffers[n++] = y.data();
      (use.training() ? kernel_->train : kernel_->eval)(buffers.data(), batch, model_->seed(),
                                                        static_cast<std::uint32_t>(model_->step()));
    }
    use.advance_step();
  }

  Model<Net>* model_;
  std::shared_ptr<const mlir::LoadedKernel> kernel_;
  std::shared_ptr<Packed> packed_;  // shared by the copies of this Kernel
};

// Compiles the model's network (or finds it in the caches) and binds the kernel to the model.
template <Network Net>
Kernel<Net> compile(Model<Net>& model, const Options& options = {}) {
  return Kernel<Net>(model, mlir::jit_compile(ir::describe(model.network()), options));
}

}  // namespace kiln::jit

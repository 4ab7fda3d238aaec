// Real-time use: after the first call, model.forward(x, y) into a preallocated y on one thread allocates nothing
// and takes no lock, in eval and in train mode. This program counts both (counting.hpp) between two readings of
// the counters. Built with KILN_REALTIME_JIT, it counts a JIT kernel's calls of the same model instead, at batches
// whose buffers fit on its stack (32 KiB a call) and at 256, whose buffers are on the heap: the runtime keeps them
// from call to call (kiln/runtime/kernel_buffers.hpp).
#include "counting.hpp"

#include <kiln/kiln.hpp>
#ifdef KILN_REALTIME_JIT
#include <kiln/jit.hpp>
#endif

#include <array>

namespace nn = kiln::nn;

// Every kind of state a call keeps: BatchNorm1d (per-call scale and shift; running statistics in train mode),
// Dropout, LayerNorm, a residual and a concat (stored values), a Bilinear's second input.
constexpr nn::Sequential net{kiln::input<12>, kiln::input<6>, nn::Bilinear<12, 6, 32>{}, nn::BatchNorm1d<32>{},
                             nn::ReLU{}, nn::Residual{nn::LayerNorm<32>{}, nn::Linear<32, 32>{}, nn::GELU{}},
                             nn::Concat{nn::Identity{}, nn::Sequential{nn::Linear<32, 8>{}, nn::Dropout{0.25f}}},
                             nn::Linear<40, 5>{}, nn::Softmax<-1>{}};

#ifdef KILN_REALTIME_JIT
constexpr std::array<kiln::index_t, 4> batches{2, 8, 16, 256};
#else
constexpr std::array<kiln::index_t, 3> batches{2, 37, 256};  // BatchNorm1d in train mode needs 2 rows
#endif

template <class Model>
bool quiet_calls(const Model& model, const char* mode) {
  for (const kiln::index_t batch : batches) {
    kiln::Tensor x1({batch, 12}), x2({batch, 6}), y({batch, 5});
    for (kiln::index_t i = 0; i < x1.numel(); ++i) x1[i] = std::sin(0.1f * static_cast<float>(i));
    for (kiln::index_t i = 0; i < x2.numel(); ++i) x2[i] = std::cos(0.3f * static_cast<float>(i));
    model.forward(x1, x2, y);  // the first call at this batch size may allocate (the workspace grows)
    const long a = allocations.load(), l = locks.load();
    for (int i = 0; i < 20; ++i) model.forward(x1, x2, y);
    const long da = allocations.load() - a, dl = locks.load() - l;
    fmt::print("{} mode, batch {}: 20 calls, {} allocations, {} locks\n", mode, batch, da, dl);
    if (da != 0 || dl != 0) return false;
  }
  return true;
}

int main() {
  kiln::set_num_threads(1);
  kiln::Model model{net, 5};
  if (!counters_count()) {
    fmt::print("the counters do not count\n");
    return 1;
  }
#ifdef KILN_REALTIME_JIT
  const auto callee = kiln::jit::compile(model);  // follows the model's train() and eval()
#else
  const auto& callee = model;
#endif
  const bool train_ok = quiet_calls(callee, "train");
  model.eval();
  const bool eval_ok = quiet_calls(callee, "eval");
  if (!train_ok || !eval_ok) return 1;
  fmt::print("no allocation and no lock after the first call\n");
}

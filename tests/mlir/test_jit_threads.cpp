// A JIT kernel shared by several threads, as a server's: eval-mode calls at once give the single-threaded outputs
// (the kernel keeps no per-call state but its packed weights; the model is held as model(x) holds it), a
// train-mode call while they run is refused, and new weights are packed once for the threads that call next.
#include "../support.hpp"

#include <kiln/jit.hpp>

#include <atomic>
#include <thread>
#include <vector>

namespace nn = kiln::nn;
using kiln::Tensor;

namespace {
constexpr nn::Sequential threads_net{kiln::input<10>, nn::Linear<10, 24>{}, nn::BatchNorm1d<24>{}, nn::ReLU{},
                                     nn::Residual{nn::Linear<24, 24>{}, nn::Tanh{}}, nn::Linear<24, 3>{}};
// Kernels kept in this process only.
kiln::jit::Options in_memory() {
  kiln::jit::Options options;
  options.use_disk_cache = false;
  return options;
}
}  // namespace

TEST_CASE("jit threads: one kernel, four threads, the single-threaded outputs", "[jit][threads]") {
  kiln::Model model{threads_net, 9};
  model.eval();
  const auto kernel = kiln::jit::compile(model, in_memory());
  std::vector<Tensor> inputs, expected;
  for (const kiln::index_t batch : {1, 5, 33, 200}) {
    Tensor x({batch, 10});
    for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.21f * static_cast<float>(i + batch));
    inputs.push_back(x);
    expected.push_back(kernel(x));
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::size_t k = static_cast<std::size_t>(t + i) % inputs.size();
        const Tensor y = kernel(inputs[k]);
        for (kiln::index_t j = 0; j < y.numel(); ++j) wrong += y[j] != expected[k][j];
      }
    });
  for (std::thread& t : threads) t.join();
  CHECK(wrong.load() == 0);

  const decltype(model)::Call call{model};  // a call in flight
  CHECK_THROWS_WITH(model.train(), "kiln: train(): refused while 1 call(s) of the model run on other threads");
}

TEST_CASE("jit threads: four threads call first after new weights, and all read them", "[jit][threads]") {
  kiln::Model model{threads_net, 9};
  model.eval();
  const auto kernel = kiln::jit::compile(model, in_memory());
  Tensor x({40, 10});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  const Tensor before = kernel(x);
  for (kiln::Parameter& p : model.parameters())
    for (float& v : p.value.values()) v = 0.75f * v + 0.01f;
  model.parameters_changed();
  const Tensor expected = kiln::jit::compile(model, in_memory())(x);  // another kernel, packed on its own
  REQUIRE(expected[0] != before[0]);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      const Tensor y = kernel(x);
      for (kiln::index_t j = 0; j < y.numel(); ++j) wrong += y[j] != expected[j];
    });
  for (std::thread& t : threads) t.join();
  CHECK(wrong.load() == 0);
}

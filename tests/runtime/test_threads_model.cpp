// One kiln::Model shared by several threads (api/include/kiln/sharing.hpp): eval-mode calls at once give exactly
// the single-threaded outputs; a load, a train-mode call or train()/eval() while calls run is refused, never
// mixed in. Run under ThreadSanitizer by the tsan preset too.
#include "../support.hpp"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

using kiln::Tensor;
namespace nn = kiln::nn;

namespace {

// BatchNorm1d (eval: scale and shift computed per call, in the workspace), Dropout, a residual (stored values).
constexpr nn::Sequential shared_net{kiln::input<12>, nn::Linear<12, 32>{}, nn::BatchNorm1d<32>{}, nn::ReLU{},
                                    nn::Residual{nn::Linear<32, 32>{}, nn::Tanh{}}, nn::Dropout{0.25f},
                                    nn::Linear<32, 5>{}};

Tensor input(kiln::index_t batch, float phase) {
  Tensor x({batch, 12});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(phase + 0.37f * static_cast<float>(i));
  return x;
}

}  // namespace

using kiln::testing::RestoreThreads;
using kiln::testing::same_bits;

TEST_CASE("threads: a shared model: eval-mode calls from several threads give the single-threaded outputs", "[threads]") {
  RestoreThreads restore;
  kiln::set_num_threads(2);  // the callers also share the pool
  kiln::Model model{shared_net, 3};
  model.eval();
  const std::vector<kiln::index_t> batches{1, 7, 64, 130};
  std::vector<Tensor> inputs, expected;
  for (std::size_t k = 0; k < batches.size(); ++k) {
    inputs.push_back(input(batches[k], static_cast<float>(k)));
    expected.push_back(model(inputs.back()));
  }
  const auto& shared = model;  // calls need only a const model
  std::atomic<int> wrong{0}, calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      Tensor y;
      for (int i = 0; i < 60; ++i) {
        const std::size_t k = static_cast<std::size_t>(t + i) % batches.size();
        if (i % 2) {
          y = shared(inputs[k]);
        } else {
          y = Tensor({batches[k], 5});
          shared.forward(inputs[k], y);
        }
        wrong += !same_bits(y, expected[k]);
        ++calls;
      }
    });
  for (std::thread& t : threads) t.join();
  CHECK(calls.load() == 240);
  CHECK(wrong.load() == 0);
  CHECK(model.step() == 0);
}

TEST_CASE("threads: a shared model: a load while calls run is refused, and no call mixes old and new weights", "[threads]") {
  RestoreThreads restore;
  kiln::set_num_threads(1);
  kiln::Model model{shared_net, 3};
  model.eval();
  const kiln::Model other{shared_net, 4};
  const kiln::TensorMap old_weights = model.state_dict(), new_weights = other.state_dict();
  const Tensor x = input(64, 0.5f);
  const Tensor y_old = model(x);
  model.load_state_dict(new_weights);
  const Tensor y_new = model(x);
  REQUIRE(!same_bits(y_old, y_new));

  std::atomic<bool> done{false};
  std::atomic<int> mixed{0}, calls_refused{0}, calls_run{0}, loads{0}, loads_refused{0};
  std::thread caller([&] {
    while (!done) {
      try {
        const Tensor y = model(x);
        mixed += !same_bits(y, y_old) && !same_bits(y, y_new);
        ++calls_run;
      } catch (const kiln::Error& e) {
        calls_refused += std::string{e.what()}.find("refused while another thread changes the model") != std::string::npos;
      }
    }
  });
  for (int i = 0; i < 300 || (loads_refused == 0 && i < 100000); ++i) {
    try {
      model.load_state_dict(i % 2 ? new_weights : old_weights);
      ++loads;
    } catch (const kiln::Error& e) {
      loads_refused += std::string{e.what()}.find("load_state_dict: refused while 1 call(s) of the model run on other "
                                                  "threads") != std::string::npos;
    }
  }
  done = true;
  caller.join();
  INFO(calls_run.load() << " calls, " << calls_refused.load() << " refused; " << loads.load() << " loads, "
                        << loads_refused.load() << " refused");
  CHECK(mixed.load() == 0);
  CHECK(calls_run.load() > 0);
  CHECK(loads_refused.load() > 0);
  CHECK(loads.load() + loads_refused.load() >= 300);
}

TEST_CASE("threads: a shared model: train-mode calls run alone, and every one that ran is counted once", "[threads]") {
  RestoreThreads restore;
  kiln::set_num_threads(1);
  kiln::Model model{shared_net, 3};  // train mode
  const Tensor x = input(32, 1.5f);
  std::atomic<int> ran{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        try {
          (void)model(x);
          ++ran;
        } catch (const kiln::Error& e) {
          refused += std::string{e.what()}.find("refused while") != std::string::npos;
        }
      }
    });
  for (std::thread& t : threads) t.join();
  CHECK(ran.load() + refused.load() == 300);
  CHECK(model.step() == static_cast<std::uint64_t>(ran.load()));
  CHECK(model.state_dict().at("1.num_batches_tracked").data_i64()[0] == ran.load());
}

TEST_CASE("threads: a shared model: a change while a call runs is refused by name", "[threads]") {
  kiln::Model model{shared_net, 3};
  model.eval();
  // Hold the model as a call does, then try each change.
  const decltype(model)::Call call{model};
  CHECK_THROWS_WITH(model.train(), "kiln: train(): refused while 1 call(s) of the model run on other threads");
  CHECK_THROWS_WITH(model.set_step(3), "kiln: set_step: refused while 1 call(s) of the model run on other threads");
  CHECK_THROWS_WITH(model.parameters_changed(),
                    "kiln: parameters_changed: refused while 1 call(s) of the model run on other threads");
  CHECK_THROWS_WITH(model.load_state_dict(model.state_dict()),
                    "kiln: load_state_dict: refused while 1 call(s) of the model run on other threads");
  CHECK(!model.is_training());
  CHECK_NOTHROW(model(input(2, 0.0f)));  // calls share it
}

// The fused kernel against the unfused evaluator (one layer at a time over the whole batch, with the same
// per-layer kernels), on the seed network in eval mode, one thread: what fusion alone gains. The plain-loop
// reference the tests use is shown for context. Prints each median and the ratios, measured in the same run.
//
//   build/bench/kiln_fused_vs_unfused --benchmark_repetitions=10
#include "ratio_reporter.hpp"

#include <kiln/kiln.hpp>

namespace nn = kiln::nn;

namespace {

constexpr nn::Sequential seed_net{kiln::input<1, 28, 28>, nn::Flatten{},     nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                                  nn::ReLU{},             nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

enum class Variant { fused, unfused, plain };

template <Variant V>
void run_seed(benchmark::State& state) {
  kiln::Model model{seed_net, 1};
  model.eval();
  const kiln::index_t batch = state.range(0);
  kiln::Tensor x({batch, 1, 28, 28}), y({batch, 10});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 255) / 255.0f;
  for (auto _ : state) {
    if constexpr (V == Variant::fused) model.forward(x, y);
    else if constexpr (V == Variant::unfused) model.forward_unfused(x, y);
    else y = model.forward_reference(x);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(static_cast<double>(kiln::flops_per_sample(seed_net) * batch) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);  // GFLOP/s
}

}  // namespace

BENCHMARK(run_seed<Variant::fused>)->Name("seed_mlp/fused")->Arg(1)->Arg(64)->Arg(256)->Arg(1000)->Unit(benchmark::kMicrosecond);
BENCHMARK(run_seed<Variant::unfused>)->Name("seed_mlp/unfused")->Arg(1)->Arg(64)->Arg(256)->Arg(1000)->Unit(benchmark::kMicrosecond);
BENCHMARK(run_seed<Variant::plain>)->Name("seed_mlp/plain_loops")->Arg(1)->Arg(64)->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  kiln::set_num_threads(1);
  kiln::bench::RatioReporter reporter("unfused");
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}

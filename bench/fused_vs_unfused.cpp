// The fused kernel against the unfused evaluator (one layer at a time over the whole batch), on the seed
// network in eval mode, one thread. Prints each median and the ratio, measured in the same run.
//
//   build/bench/kiln_fused_vs_unfused --benchmark_repetitions=10
#include "ratio_reporter.hpp"

#include <kiln/kiln.hpp>

namespace nn = kiln::nn;

namespace {

constexpr nn::Sequential seed_net{kiln::input<1, 28, 28>, nn::Flatten{},     nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                                  nn::ReLU{},             nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

template <bool Fused>
void run_seed(benchmark::State& state) {
  kiln::Model model{seed_net, 1};
  model.eval();
  const kiln::index_t batch = state.range(0);
  kiln::Tensor x({batch, 1, 28, 28}), y({batch, 10});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 255) / 255.0f;
  for (auto _ : state) {
    if constexpr (Fused) model.forward(x, y);
    else y = model.forward_reference(x);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(static_cast<double>(kiln::flops_per_sample(seed_net) * batch),
                                                 benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

}  // namespace

BENCHMARK(run_seed<true>)->Name("seed_mlp/fused")->Arg(1)->Arg(64)->Arg(256)->Arg(1000)->Unit(benchmark::kMicrosecond);
BENCHMARK(run_seed<false>)->Name("seed_mlp/unfused")->Arg(1)->Arg(64)->Arg(256)->Arg(1000)->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  kiln::bench::RatioReporter reporter("unfused");
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}

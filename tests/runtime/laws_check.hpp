// The law test_laws_networks.cpp and test_laws_graphs.cpp share: the fused kernel equals the unfused evaluator
// on random network Seed, a straight line or a graph (tests/random_networks.hpp), at every call of
// for_each_random_call.
#pragma once

#include "../random_networks.hpp"
#include "../support.hpp"

#include <string>

namespace kiln::testing {

// The fused kernel against the unfused evaluator with the same per-layer kernels (only the tiling differs: equal
// to rounding), and against the plain-loop reference. A BatchNorm's running mean is a mean of values that
// cancel (its input is often centred): float rounding of the plain loops shows there as ~1e-6 absolute, and one
// rounding of the same kernels' as up to 2^-20 (an ulp of values in [8, 16)): g++ contracts a * b + c into an FMA
// or not as it inlines the kernels into each evaluator (network 8 of the graphs, batch 2: a running mean of
// -9.5e-7 against 8.3e-8, bit-identical with -ffp-contract=off).
template <std::uint64_t Seed, bool Graph = false>
void check_fused_equals_unfused() {
  static constexpr auto net = random_net<Seed, Graph>();
  INFO("network " << Seed << ":\n" << kiln::summary(net));
  for_each_random_call<Seed>([&](const Tensor& x, bool training) {
    const std::string call = "batch " + std::to_string(x.size(0)) + (training ? ", train" : ", eval");
    kiln::Model fused_model{net, Seed};
    fused_model.train(training);
    kiln::Model same_kernels_model{fused_model}, reference_model{fused_model};
    const Tensor fused = fused_model(x);
    Tensor same_kernels(fused.shape());
    same_kernels_model.forward_unfused(x, same_kernels);
    const Tensor reference = reference_model.forward_reference(x);
    check_close(fused, same_kernels, call + ", same kernels", 1e-6, 1e-7);
    check_close(fused, reference, call, 2e-5, 2e-6);
    const auto a = fused_model.state_dict(), b = same_kernels_model.state_dict(), c = reference_model.state_dict();
    for (const auto& [k, t] : a) {
      if (t.dtype() != kiln::DType::float32) continue;
      check_close(t, b.at(k), k + " after the call (" + call + "), same kernels", 1e-6, 2e-6);
      check_close(t, c.at(k), k + " after the call (" + call + ")", 1e-5, Graph ? 1e-5 : 1e-6);
    }
  });
}

}  // namespace kiln::testing

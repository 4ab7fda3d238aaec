// The README's composites block (a residual MLP and a NeRF-style concat), compiled and run, with checks that they
// compute and name what the README says.
#include <kiln/kiln.hpp>

#include <cmath>
#include <cstdio>

namespace {
// ---- README.md, "Beyond a straight line", verbatim.
namespace nn = kiln::nn;
constexpr nn::Sequential resmlp{kiln::input<64>, nn::Linear<64, 256>{},
    nn::Residual{nn::LayerNorm<256>{}, nn::Linear<256, 512>{}, nn::GELU{}, nn::Linear<512, 256>{}},
    nn::Linear<256, 10>{}};
constexpr nn::Sequential nerf{kiln::input<63>,
    nn::Concat{nn::Identity{}, nn::Sequential{nn::Linear<63, 128>{}, nn::ReLU{}}},   // [N, 191]
    nn::Linear<191, 128>{}, nn::ReLU{}, nn::Linear<128, 4>{}};
// ---- end of the block.

int fail(const char* what) {
  std::fprintf(stderr, "readme_graphs: %s\n", what);
  return 1;
}
}  // namespace

int main() {
  static_assert(kiln::output_shape(nerf) == kiln::Dims{4});
  kiln::Model res{resmlp, 1};
  kiln::Model nerf_model{nerf, 2};
  res.eval();
  nerf_model.eval();
  const auto keys = res.state_dict();
  if (!keys.contains("1.body.1.weight") || !nerf_model.state_dict().contains("0.branches.1.0.weight"))
    return fail("state_dict keys are not PyTorch's reference modules' keys");

  kiln::Tensor x({3, 64});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  // With the body's last Linear at zero the residual block is the identity: the network is its two outer Linears.
  auto state = res.state_dict();
  state.at("1.body.3.weight").fill(0.0f);
  state.at("1.body.3.bias").fill(0.0f);
  res.load_state_dict(state);
  constexpr nn::Sequential outer{kiln::input<64>, nn::Linear<64, 256>{}, nn::Linear<256, 10>{}};
  kiln::Model line{outer, 1};
  line.eval();
  line.load_state_dict({{"0.weight", state.at("0.weight")}, {"0.bias", state.at("0.bias")},
                        {"1.weight", state.at("2.weight")}, {"1.bias", state.at("2.bias")}});
  const kiln::Tensor a = res(x), b = line(x);
  for (kiln::index_t i = 0; i < a.numel(); ++i)
    if (std::abs(a[i] - b[i]) > 1e-5f) return fail("a residual block with a zero body is not the identity");
  std::printf("resmlp: %lld parameters; nerf: output [N, 4]\n", static_cast<long long>(kiln::parameter_count(resmlp)));
  return 0;
}

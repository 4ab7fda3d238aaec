// The golden networks of tests/runtime/golden_network_cases.inc (and three of golden_graph_cases.inc), as constants that kiln_add_kernel compiles
// ahead of time for test_aot.cpp (tests/mlir/CMakeLists.txt). Keep in step with that list.
#pragma once

#include <kiln/kiln.hpp>

namespace aot_nets {
namespace nn = kiln::nn;
inline constexpr nn::Sequential net_3d{kiln::input<4, 16>, nn::BatchNorm1d<4>{}, nn::Flatten{}, nn::Linear<64, 32>{}, nn::ReLU{}, nn::Unflatten<1, 4, 8>{}, nn::LayerNorm<4, 8>{}, nn::Softmax<-1>{}, nn::Flatten{}, nn::Linear<32, 5>{}};
inline constexpr nn::Sequential net_bilinear{kiln::input<64>, kiln::input<48>, nn::Bilinear<64, 48, 32>{}, nn::ReLU{}, nn::Linear<32, 8>{}, nn::Softmax<-1>{}};
inline constexpr nn::Sequential net_mixed{kiln::input<16>, nn::Linear<16, 32, false>{}, nn::RMSNorm<32>{.eps = 1e-06f, .eps_placement = nn::RMSNormEps::added_to_rms}, nn::ReLU{}, nn::Dropout{0.5f}, nn::BatchNorm1d<32>{.momentum = std::nullopt, .affine = false}, nn::Linear<32, 4>{}, nn::Softmax<-1>{}};
inline constexpr nn::Sequential net_mlp_norm{kiln::input<32>, nn::Linear<32, 64>{}, nn::LayerNorm<64>{}, nn::Tanh{}, nn::Linear<64, 64>{}, nn::RMSNorm<64>{}, nn::Sigmoid{}, nn::Linear<64, 10>{}, nn::Softmax<1>{}};
inline constexpr nn::Sequential net_nested{kiln::input<20>, nn::Sequential{nn::Linear<20, 30>{}, nn::ReLU{}}, nn::Sequential{nn::Linear<30, 30>{}, nn::Dropout{0.5f}, nn::Tanh{}}, nn::Linear<30, 3>{}};
inline constexpr nn::Sequential net_nonfinite_norms{kiln::input<16>, nn::Linear<16, 32>{}, nn::LayerNorm<32>{}, nn::Tanh{}, nn::Dropout{0.5f}, nn::Linear<32, 32>{}, nn::BatchNorm1d<32>{}, nn::Sigmoid{}, nn::Linear<32, 10>{}, nn::Softmax<-1>{}};
inline constexpr nn::Sequential net_rank3{kiln::input<3, 10>, nn::Linear<10, 12>{}, nn::BatchNorm1d<3>{}, nn::Sigmoid{}, nn::Dropout{0.3f}, nn::Flatten{}, nn::Linear<36, 6>{}};
inline constexpr nn::Sequential net_seed{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{}, nn::ReLU{}, nn::Dropout{0.2f}, nn::Linear<256, 10>{}};
inline constexpr nn::Sequential net_two_dropouts{kiln::input<24>, nn::Linear<24, 24>{}, nn::Dropout{0.5f}, nn::ReLU{}, nn::Dropout{0.25f}, nn::Linear<24, 4>{}};
inline constexpr nn::Sequential net_graph_bn_dropout{kiln::input<10>, nn::Linear<10, 16>{}, nn::Sum{nn::Sequential{nn::BatchNorm1d<16>{}, nn::Dropout{0.5f}}, nn::Sequential{nn::Linear<16, 16>{}, nn::Dropout{0.25f}}, nn::Identity{}}, nn::ReLU{}, nn::Concat{nn::Dropout{0.3f}, nn::Sequential{nn::Linear<16, 8>{}, nn::BatchNorm1d<8>{.momentum = std::nullopt}}, nn::Residual{nn::Dropout{0.5f}, nn::Linear<16, 16>{}}}, nn::Dropout{0.2f}, nn::Linear<40, 4>{}};
inline constexpr nn::Sequential net_graph_nested{kiln::input<12>, nn::Linear<12, 16>{}, nn::Concat{nn::Residual{nn::Linear<16, 16>{}, nn::ReLU{}}, nn::Sequential{nn::Linear<16, 8>{}, nn::Sum{nn::Identity{}, nn::Sequential{nn::Linear<8, 8>{}, nn::Tanh{}}}}}, nn::Residual{nn::Sum{nn::Linear<24, 24>{}, nn::Sequential{nn::LayerNorm<24>{}, nn::Linear<24, 24>{}}}, nn::GELU{}}, nn::Linear<24, 5>{}};
inline constexpr nn::Sequential net_graph_resmlp{kiln::input<32>, nn::Linear<32, 64>{}, nn::Residual{nn::LayerNorm<64>{}, nn::Linear<64, 128>{}, nn::GELU{}, nn::Linear<128, 64>{}}, nn::Residual{nn::LayerNorm<64>{}, nn::Linear<64, 128>{}, nn::GELU{}, nn::Linear<128, 64>{}}, nn::Linear<64, 10>{}};
}  // namespace aot_nets

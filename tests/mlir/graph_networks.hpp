// Graph networks (nn::Residual, nn::Sum, nn::Concat) for the JIT and AOT kernels' tests: constants, so that
// kiln_add_kernel can compile one ahead of time (tests/mlir/CMakeLists.txt).
#pragma once

#include <kiln/kiln.hpp>

namespace graph_nets {
namespace nn = kiln::nn;

// Two pre-norm residual MLP blocks.
inline constexpr nn::Sequential resmlp{kiln::input<64>, nn::Linear<64, 256>{},
    nn::Residual{nn::LayerNorm<256>{}, nn::Linear<256, 512>{}, nn::GELU{}, nn::Linear<512, 256>{}},
    nn::Residual{nn::LayerNorm<256>{}, nn::Linear<256, 512>{}, nn::GELU{}, nn::Linear<512, 256>{}},
    nn::Linear<256, 10>{}};
// NeRF's skip: the input concatenated with a hidden layer's output.
inline constexpr nn::Sequential nerf{kiln::input<63>,
    nn::Concat{nn::Identity{}, nn::Sequential{nn::Linear<63, 128>{}, nn::ReLU{}}},
    nn::Linear<191, 128>{}, nn::ReLU{}, nn::Linear<128, 4>{}};
// A wide path and a narrow one, summed.
inline constexpr nn::Sequential two_path{kiln::input<32>,
    nn::Sum{nn::Linear<32, 32>{}, nn::Sequential{nn::Linear<32, 8>{}, nn::Tanh{}, nn::Linear<8, 32>{}}}};
// Composites inside composites on a [4, 6] input: a Concat along dim 1 (the 4) whose first branch is a
// Residual; a Residual around a three-way Sum; a Concat along the last dim (8 blocks of 6 + 2); BatchNorm1d
// and Dropout inside branches.
inline constexpr nn::Sequential nested{kiln::input<4, 6>,
    nn::Concat{nn::dim<1>, nn::Residual{nn::Linear<6, 6>{}, nn::ReLU{}}, nn::Sequential{nn::Linear<6, 6>{}, nn::BatchNorm1d<4>{}}},
    nn::Residual{nn::Sum{nn::Linear<6, 6>{}, nn::Sequential{nn::Dropout{0.3f}, nn::Tanh{}}, nn::Identity{}}, nn::BatchNorm1d<8>{}},
    nn::Concat{nn::Identity{}, nn::Sequential{nn::Linear<6, 2>{}, nn::Dropout{0.5f}}},
    nn::Flatten{}, nn::Linear<64, 5>{}};
// Bilinear reads both inputs, then a skip path around it.
inline constexpr nn::Sequential bilinear_skip{kiln::input<5>, kiln::input<7>, nn::Bilinear<5, 7, 6>{},
    nn::Residual{nn::Linear<6, 6>{}, nn::ReLU{}}, nn::Linear<6, 3>{}};
}  // namespace graph_nets

// The networks the benchmarks time (bench/README.md, "The networks"), declared once: kiln_vs_torch times them all,
// kiln_batch1_floor and kiln_pool_overhead time tiny.
#pragma once

#include <kiln/kiln.hpp>

namespace kiln::bench::networks {

namespace nn = kiln::nn;

constexpr nn::Sequential mlp_s{kiln::input<784>,       nn::Linear<784, 256>{}, nn::ReLU{}, nn::Linear<256, 256>{},
                               nn::ReLU{},             nn::Linear<256, 10>{},  nn::Softmax<1>{}};
constexpr nn::Sequential mlp_norm{kiln::input<512>,      nn::Linear<512, 512>{}, nn::LayerNorm<512>{},
                                  nn::ReLU{},            nn::Dropout{0.5f},      nn::Linear<512, 512>{},
                                  nn::BatchNorm1d<512>{}, nn::Tanh{},            nn::Linear<512, 512>{},
                                  nn::RMSNorm<512>{},    nn::Sigmoid{}};
constexpr nn::Sequential tiny{kiln::input<16>, nn::Linear<16, 32>{}, nn::ReLU{}, nn::Linear<32, 32>{}, nn::ReLU{},
                              nn::Linear<32, 4>{}};
constexpr nn::Sequential bilinear{kiln::input<64>, kiln::input<48>, nn::Bilinear<64, 48, 32>{}};
// Residual MLPs: width 256, blocks LayerNorm -> Linear(256, 512) -> GELU -> Linear(512, 256) around a skip.
constexpr nn::Residual resblock{nn::LayerNorm<256>{}, nn::Linear<256, 512>{}, nn::GELU{}, nn::Linear<512, 256>{}};
constexpr nn::Sequential resmlp{kiln::input<64>, nn::Linear<64, 256>{}, resblock, resblock, nn::Linear<256, 10>{}};
constexpr nn::Sequential resmlp6{kiln::input<64>, nn::Linear<64, 256>{}, resblock, resblock, resblock,
                                 resblock,        resblock,              resblock, nn::Linear<256, 10>{}};

}  // namespace kiln::bench::networks

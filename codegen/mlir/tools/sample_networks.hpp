// The networks kiln-mlir knows by name: the samples' networks, one small network per layer and per kind of
// join (what the FileCheck tests in tests/mlir/filecheck look at).
#pragma once

#include <kiln/dsl/layers.hpp>
#include <kiln/ir/describe.hpp>

#include <map>
#include <string>

namespace kiln::samples {

namespace nn = kiln::nn;

// 13 layers, 512 wide, every normalisation, the activations that need exp, tanh and erf, and Dropout:
// bench/jit_compile_time.cpp times its cold compile.
inline constexpr nn::Sequential wide_network{
    kiln::input<512>,       nn::Linear<512, 512>{}, nn::LayerNorm<512>{},  nn::GELU{}, nn::Dropout{0.1f},
    nn::Linear<512, 512>{}, nn::BatchNorm1d<512>{}, nn::ReLU{},            nn::Linear<512, 512>{},
    nn::RMSNorm<512>{},     nn::SiLU{},             nn::Linear<512, 512>{}, nn::Tanh{}, nn::Linear<512, 10>{}};

inline std::map<std::string, ir::Network> sample_networks() {
  std::map<std::string, ir::Network> m;
  // samples/train_fashion_mnist.cpp and samples/classify_fashion_mnist.cpp
  m["fashion-mnist"] = ir::describe(nn::Sequential{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{},
                                                   nn::BatchNorm1d<256>{}, nn::ReLU{}, nn::Dropout{0.2f},
                                                   nn::Linear<256, 10>{}});
  // The MNIST-sized MLP of the benchmarks.
  m["mnist-mlp"] = ir::describe(nn::Sequential{kiln::input<784>, nn::Linear<784, 256>{}, nn::ReLU{},
                                               nn::Linear<256, 256>{}, nn::ReLU{}, nn::Linear<256, 10>{}});
  // samples/mlp_norm.cpp
  m["mlp-norm"] = ir::describe(nn::Sequential{kiln::input<512>, nn::Linear<512, 512>{}, nn::LayerNorm<512>{},
                                              nn::ReLU{}, nn::Dropout{0.5f}, nn::Linear<512, 512>{},
                                              nn::BatchNorm1d<512>{}, nn::Tanh{}, nn::Linear<512, 512>{},
                                              nn::RMSNorm<512>{}, nn::Sigmoid{}});
  m["wide"] = ir::describe(wide_network);
  // One layer each.
  m["linear"] = ir::describe(nn::Sequential{kiln::input<20>, nn::Linear<20, 4>{}});
  m["linear-relu"] = ir::describe(nn::Sequential{kiln::input<20>, nn::Linear<20, 4>{}, nn::ReLU{}});
  m["linear-gelu"] = ir::describe(nn::Sequential{kiln::input<80>, nn::Linear<80, 4>{}, nn::GELU{}});
  m["linear-gelu-wide"] = ir::describe(nn::Sequential{kiln::input<64>, nn::Linear<64, 112>{}, nn::GELU{}});
  m["linear-short-k"] = ir::describe(nn::Sequential{kiln::input<16>, nn::Linear<16, 32>{}, nn::ReLU{}});
  m["linear-in-l2"] = ir::describe(nn::Sequential{kiln::input<256>, nn::Linear<256, 128>{}, nn::ReLU{}});
  m["bilinear"] = ir::describe(nn::Sequential{kiln::input<5>, kiln::input<7>, nn::Bilinear<5, 7, 3>{}});
  m["bilinear-blocks"] = ir::describe(nn::Sequential{kiln::input<8>, kiln::input<16>, nn::Bilinear<8, 16, 4>{}});
  m["bilinear-wide"] = ir::describe(nn::Sequential{kiln::input<8>, kiln::input<48>, nn::Bilinear<8, 48, 4>{}});
  m["relu"] = ir::describe(nn::Sequential{kiln::input<8>, nn::ReLU{}});
  m["sigmoid"] = ir::describe(nn::Sequential{kiln::input<8>, nn::Sigmoid{}});
  m["tanh"] = ir::describe(nn::Sequential{kiln::input<8>, nn::Tanh{}});
  m["softmax"] = ir::describe(nn::Sequential{kiln::input<3, 4>, nn::Softmax<1>{}});
  m["log-softmax"] = ir::describe(nn::Sequential{kiln::input<3, 4>, nn::LogSoftmax<-1>{}});
  m["softmax-last"] = ir::describe(nn::Sequential{kiln::input<40>, nn::Softmax<-1>{}});
  m["softmax-inner"] = ir::describe(nn::Sequential{kiln::input<5, 20>, nn::Softmax<1>{}});
  m["softmax-inner-wide"] = ir::describe(nn::Sequential{kiln::input<8, 32>, nn::Softmax<1>{}});
  m["gelu"] = ir::describe(nn::Sequential{kiln::input<8>, nn::GELU{}});
  m["leaky-relu"] = ir::describe(nn::Sequential{kiln::input<8>, nn::LeakyReLU{.negative_slope = 0.25f}});
  m["flatten"] = ir::describe(nn::Sequential{kiln::input<2, 3, 4>, nn::Flatten{}, nn::Unflatten<1, 4, 6>{}});
  m["dropout"] = ir::describe(nn::Sequential{kiln::input<8>, nn::Dropout{0.25f}});
  m["batchnorm"] = ir::describe(nn::Sequential{kiln::input<4, 3>, nn::BatchNorm1d<4>{}});
  m["batchnorm-rows"] = ir::describe(nn::Sequential{kiln::input<16, 8>, nn::BatchNorm1d<16>{}});
  m["layernorm"] = ir::describe(nn::Sequential{kiln::input<3, 4>, nn::LayerNorm<4>{}});
  m["rmsnorm"] = ir::describe(nn::Sequential{kiln::input<3, 4>, nn::RMSNorm<4>{}});
  m["layernorm-relu"] = ir::describe(nn::Sequential{kiln::input<20>, nn::LayerNorm<20>{}, nn::ReLU{}});
  m["layernorm-wide"] = ir::describe(nn::Sequential{kiln::input<136>, nn::LayerNorm<136>{}});
  // Graph networks: a skip path (the add), two Linears summed, a concat of the input with a branch's output.
  m["residual"] = ir::describe(nn::Sequential{kiln::input<8>, nn::Residual{nn::Linear<8, 8>{}, nn::ReLU{}}});
  m["sum"] = ir::describe(nn::Sequential{kiln::input<20>, nn::Sum{nn::Linear<20, 8>{}, nn::Linear<20, 8>{}}});
  m["concat"] = ir::describe(
      nn::Sequential{kiln::input<6>, nn::Concat{nn::Identity{}, nn::Sequential{nn::Linear<6, 4>{}, nn::ReLU{}}}});
  return m;
}

}  // namespace kiln::samples

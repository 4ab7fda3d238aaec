// Kiln: neural networks as C++ types, fused into one kernel.
//
//   #include <kiln/kiln.hpp>
//   constexpr kiln::nn::Sequential net{kiln::input<1, 28, 28>, kiln::nn::Flatten{}, kiln::nn::Linear<784, 10>{}};
//   kiln::Model model{net, /*seed=*/42};
//   kiln::Tensor y = model(x);
#pragma once

#include <kiln/dsl/layers/activations.hpp>
#include <kiln/dsl/layers/batchnorm.hpp>
#include <kiln/dsl/layers/bilinear.hpp>
#include <kiln/dsl/layers/dropout.hpp>
#include <kiln/dsl/layers/linear.hpp>
#include <kiln/dsl/layers/norms.hpp>
#include <kiln/dsl/layers/reshape.hpp>
#include <kiln/dsl/layers/softmax.hpp>
#include <kiln/dsl/schema.hpp>
#include <kiln/dsl/sequential.hpp>
#include <kiln/dsl/summary.hpp>
#include <kiln/et/fused.hpp>
#include <kiln/runtime/model.hpp>
#include <kiln/runtime/philox.hpp>
#include <kiln/runtime/tensor.hpp>
#include <kiln/runtime/tensor_file.hpp>
#include <kiln/runtime/idx.hpp>
#include <kiln/et/functional.hpp>
#include <kiln/runtime/threads.hpp>
#include <kiln/dsl/losses.hpp>
#include <kiln/runtime/optim.hpp>
#include <kiln/runtime/data.hpp>

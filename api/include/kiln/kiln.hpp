// Kiln: neural networks as C++ types, fused into one kernel.
//
//   #include <kiln/kiln.hpp>
//   constexpr kiln::nn::Sequential net{kiln::input<1, 28, 28>, kiln::nn::Flatten{}, kiln::nn::Linear<784, 10>{}};
//   kiln::Model model{net, /*seed=*/42};
//   kiln::Tensor y = model(x);
//
// The layers of the library, bottom to top: dsl/ (layers, shapes, composition), runtime/ (tensors, files,
// threads, the RNG), codegen/et/ (the fused kernels, kiln::F), and api/ (Model, optimizers, this header).
#pragma once

#include <kiln/dsl/layers.hpp>
#include <kiln/dsl/losses.hpp>
#include <kiln/dsl/schema.hpp>
#include <kiln/dsl/sequential.hpp>
#include <kiln/dsl/summary.hpp>
#include <kiln/dsl/to_pytorch.hpp>
#include <kiln/et/functional.hpp>
#include <kiln/et/fused.hpp>
#include <kiln/model.hpp>
#include <kiln/optim.hpp>
#include <kiln/runtime/data.hpp>
#include <kiln/runtime/idx.hpp>
#include <kiln/runtime/philox.hpp>
#include <kiln/runtime/tensor.hpp>
#include <kiln/runtime/tensor_file.hpp>
#include <kiln/runtime/threads.hpp>

// A compiled kernel (JIT or AOT) of a network against the expression-template kernel: eval and train mode at
// batches 1, 3 and 64, three calls each (in train mode each draws the next step's dropout masks and updates
// the running statistics), outputs and state_dicts within test_jit.cpp's tolerance.
#pragma once

#include "../support.hpp"

#include <kiln/jit.hpp>

#include <random>
#include <string>

namespace kiln::testing {

template <Network Net>
bool has_batch_norm(const Net& net) {
  for (const ir::Layer& l : ir::layers_of(net))
    if (l.kind == "batch_norm") return true;
  return false;
}

// N(0, 1.5^2) values of shape [batch, dims...].
inline Tensor random_input(const Dims& dims, index_t batch, std::mt19937& rng) {
  Shape shape{batch};
  for (int i = 0; i < dims.rank; ++i) shape.push_back(dims.sizes[i]);
  Tensor t(shape);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  for (float& v : t.values()) v = normal(rng);
  return t;
}

// compile(model) -> a kiln::jit::Kernel bound to the model.
template <Network Net, class Compile>
void check_kernel_equals_expression_templates(const Net& net, const std::string& name, Compile compile) {
  using T = network_traits<Net>;
  std::mt19937 rng(7);
  for (const index_t batch : {1, 3, 64}) {
    const Tensor x = random_input(T::input_dims, batch, rng);
    const Tensor x2 = T::input_count == 2 ? random_input(T::input2_dims, batch, rng) : Tensor({0});
    for (const bool training : {false, true}) {
      if (training && batch == 1 && has_batch_norm(net)) continue;  // BatchNorm1d refuses one value per channel
      Model<Net> et_model{net, 11};
      et_model.train(training);
      Model<Net> kernel_model{et_model};
      auto kernel = compile(kernel_model);
      auto run = [&](auto& f) {
        if constexpr (T::input_count == 2) return f(x, x2);
        else return f(x);
      };
      for (int call = 0; call < 3; ++call) {
        const std::string what = name + ", batch " + std::to_string(batch) + (training ? ", train" : ", eval") +
                                 ", call " + std::to_string(call);
        check_close(run(kernel), run(et_model), what, 2e-5, 4e-6);
        CHECK(kernel_model.step() == et_model.step());
        const auto a = kernel_model.state_dict(), b = et_model.state_dict();
        for (const auto& [k, t] : a) {
          if (t.dtype() == DType::float32) check_close(t, b.at(k), what + ", " + k, 2e-5, 4e-6);
          else CHECK(t.data_i64()[0] == b.at(k).data_i64()[0]);
        }
      }
    }
  }
}

}  // namespace kiln::testing

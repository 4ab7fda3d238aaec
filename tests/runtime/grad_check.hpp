// Checks a network's backward pass against PyTorch autograd (tests/golden/README.md, "Training goldens"):
// dL/d(input) and dL/d(every parameter) of sum(output * grad_out), train mode (and eval mode where the file has
// it), batch 3 and 64, within 1e-4 relative.
#pragma once

#include "golden_check.hpp"

#include <sstream>

namespace kiln::testing {

template <Network Net>
void check_gradients(const std::string& name, const Net& net) {
  const TensorFile data = read_tensor_file(golden_path(name));
  const TensorFile grads = read_tensor_file(std::filesystem::path{KILN_GOLDEN_DIR} / ".." / "train_data" / ("grad_" + name + ".safetensors"));
  TensorMap state;
  for (const auto& [k, t] : data.tensors)
    if (is_state_key(k)) state.emplace(k, t);
  const std::uint64_t seed = std::stoull(data.metadata.at("dropout_seed"));
  constexpr bool two_inputs = network_traits<Net>::input_count == 2;
  std::stringstream modes(grads.metadata.at("modes"));
  for (std::string mode; std::getline(modes, mode, ',');)
    for (const int batch : {3, 64}) {
      const std::string b = ".b" + std::to_string(batch), prefix = mode + ".grad.";
      Model model{net, seed};
      model.load_state_dict(state);
      model.train(mode == "train");
      const Tensor& x = data.tensors.at("in0" + b);
      const Tensor& g = grads.tensors.at("grad_out" + b);
      Tensor dx, dx2;
      if constexpr (two_inputs) model.backward(x, data.tensors.at("in1" + b), g, &dx, &dx2);
      else model.backward(x, g, &dx);
      const std::string what = name + " " + mode + " batch " + std::to_string(batch);
      check_close(dx, grads.tensors.at(prefix + "in0" + b), what + ": d input", 1e-4, 1e-5);
      if constexpr (two_inputs) check_close(dx2, grads.tensors.at(prefix + "in1" + b), what + ": d input 2", 1e-4, 1e-5);
      for (const auto& [param, got] : model.gradients()) {
        const auto it = grads.tensors.find(prefix + param + b);
        if (it == grads.tensors.end()) {
          INFO(what << ": no golden for " << param << " (omitted: " << grads.metadata.at("omitted") << ")");
          CHECK(grads.metadata.at("omitted").find(prefix + param + b) != std::string::npos);
          continue;
        }
        check_close(got, it->second, what + ": d " + param, 1e-4, 1e-5);
      }
    }
}

}  // namespace kiln::testing

#define KILN_GRADIENT_TEST(name, ...)                                              \
  TEST_CASE("gradients: " name, "[gradients]") {                                   \
    namespace nn = kiln::nn;                                                       \
    static constexpr auto net = __VA_ARGS__;                                       \
    kiln::testing::check_gradients(name, net);                                     \
  }

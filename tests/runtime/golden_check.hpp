// Checks one network against its PyTorch golden file (tests/golden/README.md describes the keys): eval and
// train mode, fused and unfused, at every batch size the file holds; running stats after one train step.
#pragma once

#include "../support.hpp"

#include <cstring>
#include <functional>
#include <string_view>
#include <vector>

namespace kiln::testing {

inline bool is_state_key(std::string_view k) {
  return !(k.starts_with("in0.") || k.starts_with("in1.") || k.starts_with("eval.") || k.starts_with("train."));
}

// One way to run a model's forward: the fused kernel, the unfused reference, the JIT kernel, ...
template <Network Net>
struct Backend {
  std::string name;
  std::function<Tensor(Model<Net>&, const Tensor& x, const Tensor* x2)> forward;
  // The absolute tolerance next to the relative 1e-5. The goldens are float64; float32 PyTorch itself is
  // 1.5e-6 off them on the train-mode seed net, so a kernel that sums in another order may need 2e-6.
  double abs_tolerance = 1e-6;
};

template <Network Net>
std::vector<Backend<Net>> expression_template_backends() {
  return {{"fused",
           [](Model<Net>& m, const Tensor& x, const Tensor* x2) {
             if constexpr (network_traits<Net>::input_count == 2) return m(x, *x2);
             else return m(x);
           }},
          {"unfused", [](Model<Net>& m, const Tensor& x, const Tensor* x2) {
             if constexpr (network_traits<Net>::input_count == 2) return m.forward_reference(x, *x2);
             else return m.forward_reference(x);
           }}};
}

template <Network Net>
void check_golden(const std::string& name, const Net& net,
                  const std::vector<Backend<Net>>& backends = expression_template_backends<Net>()) {
  const TensorFile file = read_tensor_file(golden_path(name));
  TensorMap state;
  for (const auto& [k, t] : file.tensors)
    if (is_state_key(k)) state.emplace(k, t);
  const std::uint64_t seed = std::stoull(file.metadata.at("dropout_seed"));
  constexpr bool two_inputs = network_traits<Net>::input_count == 2;

  for (const int batch : {1, 3, 64, 1000}) {
    const std::string b = ".b" + std::to_string(batch);
    const Tensor& x = file.tensors.at("in0" + b);
    const Tensor* x2 = two_inputs ? &file.tensors.at("in1" + b) : nullptr;
    for (const Backend<Net>& backend : backends) {
      auto run = [&](Model<Net>& m, const Backend<Net>& be) { return be.forward(m, x, x2); };
      const std::string how = backend.name + ", batch " + std::to_string(batch);
      // Eval mode.
      {
        Model model{net, seed};
        model.load_state_dict(state);
        model.eval();
        if (file.metadata.contains("eval_error" + b)) {
          CHECK_THROWS_WITH(run(model, backend), Catch::Contains("expected more than 1 value per channel"));
        } else {
          const auto it = file.tensors.find("eval.out" + b);
          check_close(run(model, backend), it != file.tensors.end() ? it->second : x, name + " eval, " + how, 1e-5,
                      backend.abs_tolerance);
        }
      }
      // One forward in train mode from the initial state: output and updated buffers.
      {
        Model model{net, seed};
        model.load_state_dict(state);
        model.train();
        if (file.metadata.contains("train_error" + b)) {
          CHECK_THROWS_WITH(run(model, backend), Catch::Contains("expected more than 1 value per channel"));
          // A failed call changes nothing (PyTorch counts the batch before it raises; Kiln does not).
          for (const auto& [k, t] : model.state_dict()) {
            INFO(name << " " << k << " after a failed train forward");
            CHECK(std::memcmp(t.bytes(), state.at(k).bytes(), t.nbytes()) == 0);
          }
          continue;
        }
        const Tensor y = run(model, backend);
        auto expected = file.tensors.find("train.out" + b);
        if (expected == file.tensors.end()) expected = file.tensors.find("eval.out" + b);
        check_close(y, expected != file.tensors.end() ? expected->second : x, name + " train, " + how, 1e-5,
                    backend.abs_tolerance);
        const TensorMap after = model.state_dict();
        for (const auto& [k, t] : file.tensors) {
          const std::string prefix = "train.state" + b + ".";
          if (!k.starts_with(prefix)) continue;
          const Tensor& got = after.at(k.substr(prefix.size()));
          if (t.dtype() == DType::int64) {
            INFO(name << " " << k);
            CHECK(got.data_i64()[0] == t.data_i64()[0]);
          } else {
            check_close(got, t, name + " " + k + ", " + how, 1e-5, backend.abs_tolerance);
          }
        }
      }
    }
  }
}

}  // namespace kiln::testing

#define KILN_GOLDEN_TEST(name, ...)                                                 \
  TEST_CASE("golden: " name, "[golden]") {                                          \
    namespace nn = kiln::nn;                                                        \
    static constexpr auto net = __VA_ARGS__;                                        \
    kiln::testing::check_golden(name, net);                                         \
  }

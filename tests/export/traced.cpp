// The modules of tests/export/traced_modules.py (a residual MLP, a NeRF skip, a two-path block, branches with a
// BatchNorm1d, a Bilinear on two inputs), exported by kiln_export at build time (export_traced.py writes each
// one's header, weights, and an input batch with PyTorch's eval-mode output). Here Kiln runs each: the
// expression-template kernel, and with the MLIR backend the JIT and, for two_path, a kernel compiled ahead of time
// by kiln_add_kernel from the exported header. Every output must be PyTorch's.
#include "bilinear_head.hpp"
#include "nerf_skip.hpp"
#include "norm_branches.hpp"
#include "residual_mlp.hpp"
#include "two_path.hpp"

#include <kiln/kiln.hpp>
#ifdef KILN_EXPORT_TEST_MLIR
#include <kiln/jit.hpp>

#include <two_path_kernel.h>
#endif

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace {

// The largest difference from PyTorch's output, relative to 1 or the value's size, and an error above 1e-5.
double check_output(const std::string& what, const kiln::Tensor& got, const kiln::Tensor& want) {
  if (got.shape() != want.shape()) throw kiln::Error(what + ": the output has another shape than PyTorch's");
  double worst = 0;
  for (kiln::index_t i = 0; i < want.numel(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]) / std::max(1.0, std::abs(static_cast<double>(want[i]))));
  fmt::print("{}: largest difference from PyTorch {:.2e}\n", what, worst);
  if (!(worst <= 1e-5)) throw kiln::Error(fmt::format("{}: differs from PyTorch by {:.2e}", what, worst));
  return worst;
}

template <class Net>
void check(const Net& net, const std::string& name) {
  const std::string dir = KILN_EXPORT_DIR;
  kiln::Model model{net};
  model.load_safetensors(dir + "/" + name + ".safetensors");
  model.eval();
  const kiln::TensorMap io = kiln::load_tensors(dir + "/" + name + ".io.safetensors");
  constexpr bool two_inputs = kiln::network_traits<Net>::input_count == 2;
  auto run = [&](auto& kernel) {
    if constexpr (two_inputs) return kernel(io.at("in0"), io.at("in1"));
    else return kernel(io.at("in0"));
  };
  check_output(name + " (expression templates)", run(model), io.at("out"));
#ifdef KILN_EXPORT_TEST_MLIR
  auto jit = kiln::jit::compile(model);
  check_output(name + " (JIT)", run(jit), io.at("out"));
#endif
}

#ifdef KILN_EXPORT_TEST_MLIR
void check_ahead_of_time() {
  const std::string dir = KILN_EXPORT_DIR;
  kiln::TensorMap state = kiln::load_tensors(dir + "/two_path.safetensors");
  const kiln::TensorMap io = kiln::load_tensors(dir + "/two_path.io.safetensors");
  std::vector<void*> parameters;
  for (const char* name : two_path_kernel_kernel::buffer_names) parameters.push_back(state.at(name).bytes());
  const kiln::Tensor& x = io.at("in0");
  kiln::Tensor y({x.size(0), two_path_kernel_kernel::output_features});
  two_path_kernel(two_path_kernel_kernel::Weights(parameters.data()), x.data(), y.data(), x.size(0));
  check_output("two_path (ahead of time)", y, io.at("out"));
}
#endif

}  // namespace

int main() try {
  check(residual_mlp, "residual_mlp");
  check(nerf_skip, "nerf_skip");
  check(two_path, "two_path");
  check(norm_branches, "norm_branches");
  check(bilinear_head, "bilinear_head");
#ifdef KILN_EXPORT_TEST_MLIR
  check_ahead_of_time();
#endif
  fmt::print("every exported module gives PyTorch's outputs\n");
} catch (const std::exception& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}

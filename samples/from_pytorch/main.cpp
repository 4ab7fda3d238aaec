// The network exported from PyTorch (include/net.hpp, include/net.safetensors), run by the kernel kiln_add_kernel
// compiled ahead of time, and checked against Kiln's expression-template kernel (which `kiln_export --check`
// compared with PyTorch).
#include "net.hpp"

#include <kiln/kiln.hpp>
#include <net_kernel.h>

#include <algorithm>
#include <cmath>
#include <vector>

int main() try {
  kiln::TensorMap state = kiln::load_tensors(WEIGHTS);
  std::vector<void*> parameters;
  for (const char* name : net_kernel_kernel::buffer_names) parameters.push_back(state.at(name).bytes());

  kiln::Tensor x({100, net_kernel_kernel::input_features});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.1f * static_cast<float>(i));
  kiln::Tensor y({100, net_kernel_kernel::output_features});
  net_kernel(net_kernel_kernel::Weights(parameters.data()), x.data(), y.data(), 100);

  kiln::Model model{net};
  model.load_state_dict(state);
  model.eval();
  const kiln::Tensor want = model(x);
  float worst = 0;
  for (kiln::index_t i = 0; i < y.numel(); ++i) worst = std::max(worst, std::abs(y[i] - want[i]));
  fmt::print("{}\nahead of time on 100 rows: largest difference from the expression-template kernel {:.2e}\n", net, worst);
  return worst <= 1e-5f ? 0 : 1;
} catch (const std::exception& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}

// A user's program with the installed MLIR backend: an AOT kernel and the JIT give the model's outputs.
#include "network.hpp"

#include <consumer_kernel.h>
#include <kiln/jit.hpp>

#include <cmath>
#include <vector>

int main() {
  kiln::Model model{consumer_net, 7};
  model.eval();
  const kiln::Tensor x({2, 4}, {1, 2, 3, 4, -1, -2, -3, -4});
  const kiln::Tensor y = model(x);
  std::vector<void*> params;
  for (const auto& p : model.state()) params.push_back(const_cast<std::byte*>(p.value.bytes()));
  kiln::Tensor aot({2, 2});
  consumer_kernel(consumer_kernel_kernel::Weights(params.data()), x.data(), aot.data(), 2);
  auto jit = kiln::jit::compile(model);
  const kiln::Tensor z = jit(x);
  for (int i = 0; i < 4; ++i)
    if (std::abs(aot[i] - y[i]) > 1e-5f * std::abs(y[i]) + 1e-6f || std::abs(z[i] - y[i]) > 1e-5f * std::abs(y[i]) + 1e-6f)
      return 1;
  fmt::print("consumer mlir ok\n");
}

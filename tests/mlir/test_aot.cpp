// The ahead-of-time kernels of every golden network (kiln_add_kernel, linked into this test) against PyTorch's
// goldens, in eval and train mode: the same checks as the expression-template and JIT kernels.
#include "../runtime/golden_check.hpp"
#include "aot_networks.hpp"

#include <kiln/jit.hpp>

#include <aot_net_3d.h>
#include <aot_net_bilinear.h>
#include <aot_net_mixed.h>
#include <aot_net_mlp_norm.h>
#include <aot_net_nested.h>
#include <aot_net_rank3.h>
#include <aot_net_seed.h>
#include <aot_net_two_dropouts.h>

#include <vector>

namespace {

// The AOT entry points behind kiln::jit::Kernel, which calls them as it calls a JIT kernel's: the model's
// buffers, seed and step, its checks first.
template <kiln::Network Net>
std::vector<kiln::testing::Backend<Net>> aot_backend(kiln::ir::KernelFn eval, kiln::ir::KernelFn train) {
  auto entry_points = std::make_shared<kiln::mlir::LoadedKernel>();
  entry_points->eval = eval;
  entry_points->train = train;
  return {{"aot",
           [=](kiln::Model<Net>& m, const kiln::Tensor& x, const kiln::Tensor* x2) {
             kiln::jit::Kernel<Net> kernel(m, entry_points);
             if constexpr (kiln::network_traits<Net>::input_count == 2) return kernel(x, *x2);
             else return kernel(x);
           },
           2e-6}};
}

}  // namespace

#define KILN_AOT_CASE(name)                                                                                 \
  TEST_CASE("aot golden: " #name, "[aot][golden]") {                                                       \
    using Net = std::remove_const_t<decltype(aot_nets::name)>;                                              \
    kiln::testing::check_golden(#name, aot_nets::name, aot_backend<Net>(aot_##name##_eval, aot_##name##_train)); \
  }
KILN_AOT_CASE(net_3d)
KILN_AOT_CASE(net_bilinear)
KILN_AOT_CASE(net_mixed)
KILN_AOT_CASE(net_mlp_norm)
KILN_AOT_CASE(net_nested)
KILN_AOT_CASE(net_rank3)
KILN_AOT_CASE(net_seed)
KILN_AOT_CASE(net_two_dropouts)

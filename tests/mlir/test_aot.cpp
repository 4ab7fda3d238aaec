// The ahead-of-time kernels of every golden network (kiln_add_kernel, linked into this test) against PyTorch's
// goldens, in eval and train mode: the same checks as the expression-template and JIT kernels. Each kernel
// is called through its plain entry points, as a program that links it would.
#include "../runtime/golden_check.hpp"
#include "aot_networks.hpp"

#include <kiln/ir/network.hpp>

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

// Calls <name>_eval or <name>_train on the model's buffers, with the model's seed and step, as kiln::jit does.
template <kiln::Network Net>
std::vector<kiln::testing::Backend<Net>> aot_backend(kiln::ir::KernelFn eval, kiln::ir::KernelFn train) {
  return {{"aot",
           [=](kiln::Model<Net>& m, const kiln::Tensor& x, const kiln::Tensor* x2) {
             kiln::Tensor y(m.checked_output_shape(x, x2));
             kiln::et::detail::check_batch_stats<Net>(kiln::leaf_values(m.network()), x.size(0), m.is_training());
             std::vector<void*> buffers;
             for (const auto& e : m.entries()) buffers.push_back(const_cast<std::byte*>(e.tensor.bytes()));
             buffers.push_back(const_cast<float*>(x.data()));
             if (x2) buffers.push_back(const_cast<float*>(x2->data()));
             buffers.push_back(y.data());
             (m.is_training() ? train : eval)(buffers.data(), x.size(0), m.seed(), m.step());
             if (m.is_training()) m.set_step(m.step() + 1);
             return y;
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

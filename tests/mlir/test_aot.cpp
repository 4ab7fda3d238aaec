// The ahead-of-time kernels of every golden network (kiln_add_kernel, linked into this test) against PyTorch's
// goldens, in eval and train mode: the same checks as the expression-template and JIT kernels. A graph network's
// against the expression-template kernel, as test_jit_graphs.cpp checks the JIT's.
#include "../runtime/golden_check.hpp"
#include "aot_networks.hpp"
#include "graph_check.hpp"
#include "graph_networks.hpp"

#include <kiln/jit.hpp>

#include <aot_net_3d.h>
#include <aot_net_bilinear.h>
#include <aot_net_mixed.h>
#include <aot_net_mlp_norm.h>
#include <aot_net_nested.h>
#include <aot_net_nonfinite_norms.h>
#include <aot_net_rank3.h>
#include <aot_net_seed.h>
#include <aot_net_two_dropouts.h>
#include <aot_net_graph_bn_dropout.h>
#include <aot_net_graph_nested.h>
#include <aot_net_graph_resmlp.h>
#include <aot_graph_nested.h>
#ifdef KILN_AOT_HASWELL
#include <aot_haswell_net_bilinear.h>
#include <aot_haswell_net_graph_resmlp.h>
#include <aot_haswell_net_mlp_norm.h>
#include <aot_haswell_net_seed.h>
#endif

#include <vector>

namespace {

// The AOT entry points behind kiln::jit::Kernel, which calls them as it calls a JIT kernel's: the model's
// buffers, seed and step, its checks first, its packing when the weights change.
std::shared_ptr<kiln::mlir::LoadedKernel> entry_points(kiln::ir::KernelFn eval, kiln::ir::KernelFn train,
                                                       kiln::ir::PackFn pack, std::int64_t packed_floats) {
  auto kernel = std::make_shared<kiln::mlir::LoadedKernel>();
  kernel->eval = eval;
  kernel->train = train;
  kernel->pack = pack;
  kernel->packed_floats = packed_floats;
  return kernel;
}
#define KILN_AOT_ENTRY_POINTS(name) entry_points(name##_eval, name##_train, name##_pack, name##_kernel::packed_floats)

template <kiln::Network Net>
std::vector<kiln::testing::Backend<Net>> aot_backend(std::shared_ptr<kiln::mlir::LoadedKernel> loaded) {
  return {{"aot",
           [=](kiln::Model<Net>& m, const kiln::Tensor& x, const kiln::Tensor* x2) {
             kiln::jit::Kernel<Net> kernel(m, loaded);
             if constexpr (kiln::network_traits<Net>::input_count == 2) return kernel(x, *x2);
             else return kernel(x);
           },
           2e-6}};
}

}  // namespace

// A golden network's ahead-of-time kernel `kernel` against PyTorch's goldens; `title` begins the test's name.
#define KILN_AOT_GOLDEN(title, name, kernel)                                                         \
  TEST_CASE(title #name, "[aot][golden]") {                                                          \
    using Net = std::remove_const_t<decltype(aot_nets::name)>;                                       \
    kiln::testing::check_golden(#name, aot_nets::name, aot_backend<Net>(KILN_AOT_ENTRY_POINTS(kernel))); \
  }
#define KILN_AOT_CASE(name) KILN_AOT_GOLDEN("aot golden: ", name, aot_##name)
KILN_AOT_CASE(net_3d)
KILN_AOT_CASE(net_bilinear)
KILN_AOT_CASE(net_mixed)
KILN_AOT_CASE(net_mlp_norm)
KILN_AOT_CASE(net_nested)
KILN_AOT_CASE(net_nonfinite_norms)
KILN_AOT_CASE(net_rank3)
KILN_AOT_CASE(net_seed)
KILN_AOT_CASE(net_two_dropouts)
KILN_AOT_CASE(net_graph_bn_dropout)
KILN_AOT_CASE(net_graph_nested)
KILN_AOT_CASE(net_graph_resmlp)

// The same networks compiled for an AVX2 CPU (-march=haswell's 16 vector registers: broadcast tiles of 16 columns,
// and weights packed in panels as wide), run here where this CPU has AVX2.
#ifdef KILN_AOT_HASWELL
#define KILN_AOT_HASWELL_CASE(name) KILN_AOT_GOLDEN("aot golden, compiled for haswell: ", name, aot_haswell_##name)
KILN_AOT_HASWELL_CASE(net_seed)
KILN_AOT_HASWELL_CASE(net_mlp_norm)
KILN_AOT_HASWELL_CASE(net_bilinear)
KILN_AOT_HASWELL_CASE(net_graph_resmlp)
#endif

TEST_CASE("aot graph: nested composites == the expression-template kernel", "[aot][graph]") {
  using Net = std::remove_const_t<decltype(graph_nets::nested)>;
  const auto kernel = KILN_AOT_ENTRY_POINTS(aot_graph_nested);
  kiln::testing::check_kernel_equals_expression_templates(
      graph_nets::nested, "nested", [&](kiln::Model<Net>& m) { return kiln::jit::Kernel<Net>(m, kernel); });
}

// The JIT kernel of every golden network and layer case against PyTorch 1.13.1, in eval and train mode, at
// batch 1, 3, 64 and 1000, with the running statistics after a train step (the same checks as the
// expression-template kernel's, tests/runtime/golden_check.hpp). Its dot products sum in another order than
// the expression-template kernel's, so near-zero outputs get PyTorch float32's own absolute tolerance, 2e-6.
#include "../runtime/golden_check.hpp"

#include <kiln/jit.hpp>

namespace {

kiln::jit::Options no_disk_cache() {
  kiln::jit::Options o;
  o.use_disk_cache = false;
  return o;
}

template <kiln::Network Net>
std::vector<kiln::testing::Backend<Net>> jit_backend() {
  return {{"jit", [](kiln::Model<Net>& m, const kiln::Tensor& x, const kiln::Tensor* x2) {
             auto kernel = kiln::jit::compile(m, no_disk_cache());
             if constexpr (kiln::network_traits<Net>::input_count == 2) return kernel(x, *x2);
             else return kernel(x);
           },
           2e-6}};
}

}  // namespace

#define KILN_CASE(name, ...)                                      \
  TEST_CASE("jit golden: " name, "[jit][golden]") {               \
    namespace nn = kiln::nn;                                      \
    static constexpr auto net = __VA_ARGS__;                      \
    kiln::testing::check_golden(name, net, jit_backend<std::remove_const_t<decltype(net)>>()); \
  }
#include "../runtime/golden_layer_cases.inc"
#include "../runtime/golden_network_cases.inc"
#include "../runtime/golden_graph_cases.inc"
#undef KILN_CASE

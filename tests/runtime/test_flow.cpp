// Where the fused kernel keeps its values (et/flow.hpp): which element-wise layers run as the epilogue of the
// Linear before them, and that such a Linear never writes over its own input. The fused == unfused laws check
// the numbers; these check that the plan is the one meant.
#include "../support.hpp"

#include <array>

namespace nn = kiln::nn;
namespace et = kiln::et;

namespace {
// The eval-mode flow of a network without Dropout or batch-statistics BatchNorm.
template <class Net>
auto eval_flow(const Net&) {
  using T = kiln::network_traits<Net>;
  constexpr std::size_t S = T::step_count;
  return et::plan_flow<S>(T::analysis, std::array<bool, S>{}, std::array<bool, S>{}, et::detail::fusable_steps<Net>());
}
}  // namespace

TEST_CASE("flow: an activation after a Linear runs in the Linear's stores", "[flow]") {
  static constexpr nn::Sequential tiny{kiln::input<16>, nn::Linear<16, 32>{}, nn::ReLU{}, nn::Linear<32, 32>{},
                                       nn::GELU{}, nn::Linear<32, 4>{}};
  const auto f = eval_flow(tiny);
  CHECK(f.epilogue == std::array<bool, 5>{false, true, false, true, false});
  // The Linears' own outputs take no slot; the second Linear reads slot 0 and writes the GELU's value elsewhere.
  CHECK(f.slot[kiln::value_of_step(0)] == -1);
  CHECK(f.slot[kiln::value_of_step(2)] == -1);
  CHECK(f.slot[kiln::value_of_step(1)] == 0);
  CHECK(f.slot[kiln::value_of_step(3)] == 1);
  CHECK(f.slots == 2);
}

TEST_CASE("flow: a Linear's output that another step reads is stored, not fused", "[flow]") {
  // Residual{ReLU}: the skip reads the Linear's output too.
  static constexpr nn::Sequential skip{kiln::input<8>, nn::Linear<8, 8>{}, nn::Residual{nn::ReLU{}}};
  CHECK(eval_flow(skip).epilogue == std::array<bool, 3>{false, false, false});
  // LayerNorm needs a whole row: no epilogue. The Tanh after it follows no Linear.
  static constexpr nn::Sequential norm{kiln::input<8>, nn::Linear<8, 8>{}, nn::LayerNorm<8>{}, nn::Tanh{}};
  CHECK(eval_flow(norm).epilogue == std::array<bool, 3>{false, false, false});
  // The network's output is the activation's; the Linear before the last one is still fused.
  static constexpr nn::Sequential last{kiln::input<8>, nn::Linear<8, 24>{}, nn::Sigmoid{}};
  const auto f = eval_flow(last);
  CHECK(f.epilogue == std::array<bool, 2>{false, true});
  CHECK(f.output_direct);
  CHECK(f.slots == 0);
}

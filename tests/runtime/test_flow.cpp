// Where the fused kernel keeps its values (et/flow.hpp): which element-wise layers run as the epilogue of the
// Linear before them, and that such a Linear never writes over its own input; and how it cuts a batch into tiles
// (Tiling, et/fused.hpp). The fused == unfused laws check the numbers; these check that the plan is the one meant.
#include "../support.hpp"

#include <algorithm>
#include <array>
#include <type_traits>
#include <vector>

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

TEST_CASE("tiling: every row in one tile, the threads' shares within a row of each other", "[flow]") {
  using et::detail::Tiling;
  constexpr kiln::index_t block = et::linear_rows;
  for (int threads : {1, 2, 3, 4})
    for (kiln::index_t max_rows : {block, 10 * block, 20 * block, 40 * block})
      for (kiln::index_t batch : {0, 1, 5, 6, 7, 12, 13, 24, 25, 64, 100, 255, 256, 257, 1000, 4096}) {
        CAPTURE(threads, max_rows, batch);
        const Tiling tiling(batch, max_rows, threads);
        REQUIRE(tiling.slots() >= 1);
        REQUIRE(tiling.slots() <= threads);
        CHECK(tiling.begin(0) == 0);
        CHECK(tiling.begin(tiling.count) == batch);
        std::vector<kiln::index_t> slot_rows(static_cast<std::size_t>(tiling.slots()));
        kiln::index_t largest = 0;
        for (kiln::index_t t = 0; t < tiling.count; ++t) {
          const kiln::index_t w = t / tiling.per_slot;
          REQUIRE(tiling.rows(t) >= 0);
          CHECK(tiling.rows(t) <= max_rows);
          CHECK((tiling.begin(t) - tiling.slot_begin(w)) % block == 0);  // whole blocks but for a slot's last
          slot_rows[static_cast<std::size_t>(w)] += tiling.rows(t);
          largest = std::max(largest, tiling.rows(t));
        }
        CHECK(tiling.max_rows() == largest);
        const auto [fewest, most] = std::minmax_element(slot_rows.begin(), slot_rows.end());
        CHECK(*most - *fewest <= 1);
        // run_tiles: each tile with rows once, on its own slot (slots run at once: one list each).
        std::vector<std::vector<kiln::index_t>> ran(slot_rows.size());
        tiling.run_tiles([&](kiln::index_t w, kiln::index_t t) { ran[static_cast<std::size_t>(w)].push_back(t); });
        std::vector<kiln::index_t> with_rows;
        for (kiln::index_t t = 0; t < tiling.count; ++t)
          if (tiling.rows(t) > 0) with_rows.push_back(t);
        std::vector<kiln::index_t> visited;
        for (std::size_t w = 0; w < ran.size(); ++w)
          for (kiln::index_t t : ran[w]) {
            CHECK(t / tiling.per_slot == static_cast<kiln::index_t>(w));
            visited.push_back(t);
          }
        CHECK(visited == with_rows);
      }
  // The case that set the rule: 256 rows on 2 threads went 132 and 124 when dealt out in whole blocks.
  const Tiling tiny_256(256, 20 * block, 2);
  CHECK(tiny_256.slot_begin(1) == 128);
}

TEST_CASE("tiling: evaluation's tiles grow where the weights outgrow L2, their values within half of it", "[flow]") {
  const kiln::index_t l2 = kiln::l2_cache_bytes();
  CAPTURE(l2);
  // 256 KiB of weights: within any L2 of at least that, so the usual tiles.
  static constexpr nn::Sequential small{kiln::input<256>, nn::Linear<256, 128>{}, nn::ReLU{}, nn::Linear<128, 256>{}};
  using Small = et::detail::Plan<std::remove_const_t<decltype(small)>>;
  if (l2 >= 256 * 1024) CHECK(Small::eval_tile_rows(2) == Small::tile_rows);
  // 16 MiB of weights: tiles longer than the usual 12 rows of 2048 floats, as long as 2 slots of them fit half of L2.
  static constexpr nn::Sequential large{kiln::input<1024>, nn::Linear<1024, 2048>{}, nn::ReLU{},
                                        nn::Linear<2048, 1024>{}};
  using Large = et::detail::Plan<std::remove_const_t<decltype(large)>>;
  const kiln::index_t rows = Large::eval_tile_rows(2), slot_bytes = Large::max_width() * 4;
  CHECK(rows % et::linear_rows == 0);
  CHECK(rows >= Large::tile_rows);
  CHECK(rows <= Large::max_tile_rows);
  if (rows > Large::tile_rows) CHECK(2 * rows * slot_bytes <= l2 / 2);
  if (l2 < 16 * 1024 * 1024 && rows < Large::max_tile_rows)  // no longer tile would fit
    CHECK(2 * (rows + et::linear_rows) * slot_bytes > l2 / 2);
  // Fewer slots, longer tiles.
  CHECK(Large::eval_tile_rows(1) >= rows);
}

// Laws on random graphs (Residual, Sum, Concat, nested): the fused kernel equals the unfused evaluator (eval and
// train mode, many batch sizes), and a graph saved and loaded again is bit-exact, outputs included.
#include "laws_check.hpp"

#include <cstring>
#include <filesystem>

using kiln::index_t;
using kiln::Tensor;
using kiln::testing::check_fused_equals_unfused;

TEST_CASE("laws: fused == unfused on random graphs (Residual, Sum, Concat, nested)", "[laws][graph]") {
  kiln::testing::for_each_random_seed<12>([](auto seed) { check_fused_equals_unfused<decltype(seed)::value, true>(); });
}

TEST_CASE("laws: a graph saved then loaded is bit-exact, outputs included", "[laws][files][graph]") {
  kiln::testing::for_each_random_seed<12>([](auto seed) {
    static constexpr auto net = kiln::testing::random_graph<decltype(seed)::value>;
    kiln::Model model{net, seed};
    Tensor x({9, kiln::testing::random_input_width<decltype(seed)::value>});
    for (index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.61f * static_cast<float>(i));
    model(x);  // one train step: running stats move
    const auto path = std::filesystem::temp_directory_path() /
                      ("kiln_laws_graph_" + std::to_string(decltype(seed)::value) + ".safetensors");
    model.save_safetensors(path);
    kiln::Model loaded{net, 99};
    loaded.load_safetensors(path);
    std::filesystem::remove(path);
    for (const auto& [k, t] : model.state_dict()) {
      INFO("network " << decltype(seed)::value << ", " << k);
      CHECK(std::memcmp(t.bytes(), loaded.state_dict().at(k).bytes(), t.nbytes()) == 0);
    }
    model.eval();
    loaded.eval();
    const Tensor ya = model(x), yb = loaded(x);
    CHECK(std::memcmp(ya.data(), yb.data(), ya.nbytes()) == 0);
  });
}

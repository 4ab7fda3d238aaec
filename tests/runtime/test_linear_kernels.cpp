// The expression-template Linear kernel (linear_forward) against the plain loop, at shapes that reach each of its
// paths: linear_dots for at most linear_dot_out outputs (every tile height, a partial chunk of inputs), the
// register tiles past it (partial blocks and row tiles), chunks of inputs, accumulation into y and an epilogue.
#include "../support.hpp"

#include <vector>

using kiln::index_t;
namespace et = kiln::et;

namespace {
std::vector<float> values(index_t n, float scale) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = scale * static_cast<float>((i * 37 % 23) - 11);
  return v;
}
struct Halve {  // an epilogue whose effect shows in every value
  et::vfloat operator()(et::vfloat v) const { return v * 0.5f; }
};
}  // namespace

TEST_CASE("linear kernel: y = x W^T + b at every path's shapes, with and without bias, accumulating, with an "
          "epilogue", "[linear]") {
  for (index_t out : {1, 2, 3, 4, 5, 17})
    for (index_t in : {1, 3, 4, 5, 17, 32, 300})
      for (index_t rows : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 33}) {
        const auto x = values(rows * in, 0.25f), w = values(out * in, 0.125f), b = values(out, 1.0f);
        std::vector<float> packed(static_cast<std::size_t>(et::linear_packed_size(in, out)));
        et::pack_linear_weight(w.data(), in, out, packed.data());
        std::vector<float> expected(static_cast<std::size_t>(rows * out)), y = values(rows * out, 2.0f);
        const std::vector<float> y0 = y;
        for (const bool bias : {true, false}) {
          et::linear_forward_reference(x.data(), rows, in, out, w.data(), bias ? b.data() : nullptr, expected.data());
          INFO(rows << " rows, Linear(" << in << ", " << out << ")" << (bias ? "" : " without bias"));
          et::linear_forward(x.data(), rows, in, out, packed.data(), bias ? b.data() : nullptr, y.data());
          for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == Approx(expected[i]).margin(1e-4));
          et::linear_forward<Halve>(x.data(), rows, in, out, packed.data(), bias ? b.data() : nullptr, y.data());
          for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == Approx(expected[i] * 0.5f).margin(1e-4));
        }
        y = y0;  // accumulate: y += x W^T (no bias)
        et::linear_forward_reference(x.data(), rows, in, out, w.data(), nullptr, expected.data());
        et::linear_forward(x.data(), rows, in, out, packed.data(), nullptr, y.data(), /*accumulate=*/true);
        for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == Approx(y0[i] + expected[i]).margin(1e-4));
      }
}

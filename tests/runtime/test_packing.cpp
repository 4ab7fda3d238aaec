// The layouts the Linear kernels read, against their definitions: pack_linear_matrix through each of its paths
// (in-register transposes, vector copies, the element loop for partial blocks, M itself for at most
// linear_dot_out outputs), transpose_matrix, lane_sums, the partial loads and stores, and the 16x16 (AVX-512) /
// 8x8 / 4x4 transpose_block itself. Every value is distinct, so a misplaced one shows.
#include "../support.hpp"

#include <utility>
#include <vector>

using kiln::index_t;
namespace et = kiln::et;

namespace {
std::vector<float> distinct_values(index_t n) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = static_cast<float>(i + 1);
  return v;
}
}  // namespace

TEST_CASE("packing: transpose_block transposes a square block of vectors", "[packing]") {
  constexpr int n = et::simd_width;
  et::vfloat v[n];
  for (int r = 0; r < n; ++r)
    for (int l = 0; l < n; ++l) v[r][l] = static_cast<float>(r * 100 + l);
  et::transpose_block(v);
  for (int r = 0; r < n; ++r)
    for (int l = 0; l < n; ++l) REQUIRE(v[r][l] == static_cast<float>(l * 100 + r));
}

TEST_CASE("packing: load_first and store_first move the first n lanes and no others, for every n", "[packing]") {
  constexpr int n = et::simd_width;
  std::vector<float> src = distinct_values(n + 2);
  et::vfloat v;
  for (int l = 0; l < n; ++l) v[l] = static_cast<float>(-1 - l);
  for (int count = 0; count <= n; ++count) {
    const et::vfloat loaded = et::load_first(src.data() + 1, count);
    for (int l = 0; l < n; ++l) REQUIRE(loaded[l] == (l < count ? src[static_cast<std::size_t>(1 + l)] : 0.0f));
    std::vector<float> dst(n + 2, 7.0f);
    et::store_first(dst.data() + 1, v, count);
    REQUIRE(dst[0] == 7.0f);
    for (int l = 0; l <= n; ++l) REQUIRE(dst[static_cast<std::size_t>(1 + l)] == (l < count ? v[l] : 7.0f));
  }
}

TEST_CASE("packing: lane_sums<n> gives lane j the sum of vector j, for j < n, reading only the first n vectors",
          "[packing]") {
  [&]<int... N>(std::integer_sequence<int, N...>) {
    auto check = [&](auto count) {
      constexpr int n = count + 1;
      et::vfloat v[n];
      for (int r = 0; r < n; ++r)
        for (int l = 0; l < et::simd_width; ++l) v[r][l] = static_cast<float>((r + 1) * 1000 + l * l);
      const et::vfloat sums = et::lane_sums<n>(v);
      for (int r = 0; r < n; ++r) {
        float expected = 0;
        for (int l = 0; l < et::simd_width; ++l) expected += static_cast<float>((r + 1) * 1000 + l * l);
        INFO(n << " vectors, lane " << r);
        REQUIRE(sums[r] == expected);
      }
    };
    (check(std::integral_constant<int, N>{}), ...);
  }(std::make_integer_sequence<int, et::simd_width>{});
}

TEST_CASE("packing: transpose_matrix equals its definition at every shape", "[packing]") {
  for (index_t rows : {1, 3, 15, 16, 17, 33, 64})
    for (index_t cols : {1, 4, 16, 31, 48, 256}) {
      const auto src = distinct_values(rows * cols);
      std::vector<float> dst(src.size(), -1.0f);
      et::transpose_matrix(src.data(), rows, cols, dst.data());
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = 0; c < cols; ++c) {
          INFO(rows << "x" << cols << " at " << r << ", " << c);
          REQUIRE(dst[static_cast<std::size_t>(c * rows + r)] == src[static_cast<std::size_t>(r * cols + c)]);
        }
    }
}

TEST_CASE("packing: pack_linear_matrix equals its definition for W and W^T at every shape", "[packing]") {
  constexpr index_t n = et::simd_width;
  for (index_t in : {1, 5, 16, 17, 48, 100})
    for (index_t out : {1, 4, 10, 16, 33, 64, 80, 130}) {
      const auto w = distinct_values(in * out);  // PyTorch's weight [out, in]
      for (const bool transposed : {false, true}) {
        // M [rows_m, cols_m]: W itself (stride_o = in, stride_i = 1), or W^T (stride_o = 1, stride_i = in).
        const index_t m_out = transposed ? in : out, m_in = transposed ? out : in;
        const index_t stride_o = transposed ? 1 : in, stride_i = transposed ? in : 1;
        std::vector<float> packed(static_cast<std::size_t>(et::linear_packed_size(m_in, m_out)), -1.0f);
        et::pack_linear_matrix(w.data(), m_in, m_out, stride_o, stride_i, packed.data());
        if (m_out <= et::linear_dot_out) {  // linear_dots' layout: M row-major
          for (index_t o = 0; o < m_out; ++o)
            for (index_t i = 0; i < m_in; ++i) {
              INFO((transposed ? "W^T of " : "W of ") << out << "x" << in << ": output " << o << ", input " << i);
              REQUIRE(packed[static_cast<std::size_t>(o * m_in + i)] ==
                      w[static_cast<std::size_t>(o * stride_o + i * stride_i)]);
            }
          continue;
        }
        const index_t blocks = et::linear_blocks(m_out);
        for (index_t o = 0; o < blocks * n; ++o)
          for (index_t i = 0; i < m_in; ++i) {
            const index_t block = o / n, lane = o % n;
            const index_t g0 = block / et::linear_block_group * et::linear_block_group;
            const index_t nb = std::min<index_t>(et::linear_block_group, blocks - g0);
            const index_t at = g0 * m_in * n + (i * nb + (block - g0)) * n + lane;
            const float expected = o < m_out ? w[static_cast<std::size_t>(o * stride_o + i * stride_i)] : 0.0f;
            INFO((transposed ? "W^T of " : "W of ") << out << "x" << in << ": output " << o << ", input " << i);
            REQUIRE(packed[static_cast<std::size_t>(at)] == expected);
          }
      }
    }
}
